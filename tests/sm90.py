"""Offline sm_90 (H100/H200) builds of every Triton kernel of the package, without a GPU.

The launch configurations are captured, not copied: each *source* below (a ``gpu``-marked test, a benchmark
model shape, the patched timm Swin) builds its inputs the way it does, on ``meta`` tensors, and calls the public
op (``backends.choose_backend`` is patched to record the backend-level arguments; on meta tensors the op itself
runs its fake kernel) or the Triton backend directly. The Triton backend's own host code then runs forward
(and backward where the source needs gradients) on those arguments with every ``@triton.jit`` function of the
package replaced by a recorder, so the constexprs, dtypes and num_warps/num_stages are whatever ``config(...)``
and the launchers pick. Each launch is specialized by Triton's own binder (a meta tensor's ``data_ptr`` is its
byte offset, so pointer alignment is that of a fresh allocation) and compiled for ``GPUTarget("cuda", 90, 64)``:
shared memory from the kernel metadata, registers and stack frame (spills) from the cubin (cuobjdump, shipped
with Triton), and the lowering of every ``tl.dot`` from the TTGIR and PTX.

Triton decides when a kernel is *defined* whether it is interpreted, so this runs in a process of its own
without ``TRITON_INTERPRET``: ``python -m tests.sm90 [--json PATH] [--jobs N] [--quiet]``. It prints one line per
distinct compilation and writes the results as JSON; tests/test_sm90_compile.py runs it and asserts on them.
"""
from __future__ import annotations

import os

os.environ.pop("TRITON_INTERPRET", None)  # before triton (and torch, which may import it) are imported

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import contextlib  # noqa: E402
import importlib  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import pkgutil  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Callable, Iterator  # noqa: E402

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime.jit import JITFunction, create_function_from_signature  # noqa: E402

import semask_kernels as sk  # noqa: E402
import semask_kernels.ops  # noqa: E402
from semask_kernels import _triton_utils, backends  # noqa: E402

SM90 = GPUTarget("cuda", 90, 64)
SHARED_LIMIT = 232448  # bytes of shared memory one block may use on sm_90 (227 KiB, H100/H200)
META = torch.device("meta")
DTYPES = (torch.bfloat16, torch.float16, torch.float32)


# ------------------------------------------------------------------------------------------ capturing launches

@dataclass
class Call:
    """One call of an op's Triton backend: ``source`` says who makes it."""
    source: str
    op: str
    args: tuple
    backward: bool


@dataclass
class Launch:
    kernel: JITFunction
    args: tuple
    kwargs: dict
    sources: set = field(default_factory=set)


def triton_modules() -> dict[str, object]:
    """{op: its ``triton`` module} for every op folder of the package that has one."""
    mods = {}
    for info in pkgutil.iter_modules(semask_kernels.ops.__path__):
        if info.ispkg:
            try:
                mods[info.name] = importlib.import_module(f"semask_kernels.ops.{info.name}.triton")
            except ModuleNotFoundError:
                continue
    return mods


def kernel_modules() -> list:
    """Every module that defines jit kernels: each op's ``triton`` module and the shared kernel families of
    ``semask_kernels/kernels/`` (e.g. the window-attention family both attention ops launch)."""
    import semask_kernels.kernels
    mods = list(triton_modules().values())
    for info in pkgutil.iter_modules(semask_kernels.kernels.__path__):
        mod = importlib.import_module(f"semask_kernels.kernels.{info.name}")
        if any(isinstance(obj, JITFunction) for obj in vars(mod).values()):
            mods.append(mod)
    return mods


def kernels() -> dict[str, JITFunction]:
    """{"family.name": kernel} of every launchable jit function (``*_kernel``) defined in the kernel modules; the
    family is the op of an ``ops/<op>/triton.py``, or the module's name in ``semask_kernels/kernels/``."""
    found = {}
    for mod in kernel_modules():
        for name, obj in vars(mod).items():
            if isinstance(obj, JITFunction) and name.endswith("_kernel") and obj.fn.__module__ == mod.__name__:
                found[f"{_family(mod.__name__)}.{name}"] = obj
    return found


def _family(module: str) -> str:
    """The kernels' family: the op of ``semask_kernels.ops.<op>.triton``, or the module's name in
    ``semask_kernels/kernels/`` (``semask_kernels.kernels.window_attention`` -> window_attention)."""
    parts = module.split(".")
    return parts[-2] if parts[-1] == "triton" else parts[-1]


class _Recorder:
    """Stands in for a jit function in its module: ``kernel[grid](*args, **kwargs)`` records the launch."""

    def __init__(self, kernel: JITFunction, log: list):
        self.kernel, self.log = kernel, log

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.log.append((self.kernel, args, kwargs))


@contextlib.contextmanager
def _recording(log: list):
    """Every jit function of every triton module replaced by a recorder (restored after: the compiler looks
    helpers up in the modules' globals)."""
    saved = []
    for mod in kernel_modules():
        for name, obj in list(vars(mod).items()):
            if isinstance(obj, JITFunction):
                saved.append((mod, name, obj))
                setattr(mod, name, _Recorder(obj, log))
    try:
        yield
    finally:
        for mod, name, obj in saved:
            setattr(mod, name, obj)


@contextlib.contextmanager
def _capturing_calls(calls: list, source: str):
    """Public ops called with ``backend="triton"`` record their backend-level arguments; on meta tensors the
    op then runs its fake kernel (the backend name returned does not matter there)."""
    original = backends.choose_backend

    def choose(op, requested, *args):
        if requested == "triton":
            needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in _tensors(args))
            calls.append(Call(source, op, args, needs_grad))
        return "reference"

    backends.choose_backend = choose
    try:
        yield
    finally:
        backends.choose_backend = original


def _tensors(args) -> Iterator[torch.Tensor]:
    for a in args:
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from _tensors(a)


def _run_backend(call: Call) -> None:
    """The Triton backend's host code on ``call``, forward and (if needed) backward, as the op's autograd
    formula calls it (op.py: backward(grad.contiguous(), *inputs), prior_map_decode with the map sizes); then
    the same for every Triton variant the op registers ("triton.<variant>")."""
    _run_module(call, triton_modules()[call.op])
    for name in backends.names(call.op):
        if name != "triton" and backends.base(name) == "triton":
            _run_module(call, backends.get_backend(call.op, name))


def _run_module(call: Call, mod) -> None:
    args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in call.args)
    out = mod.forward(*args)
    if not call.backward:
        return
    if hasattr(mod, "forward_saving_stats"):  # a gradient is needed: the forward saves what its backward reads
        out, stats = mod.forward_saving_stats(*args)
        mod.backward_from_stats(torch.empty_like(out), out, stats, *args)
        return
    if call.op == "prior_map_decode":
        mod.backward(torch.empty_like(out), [tuple(m.shape[-2:]) for m in args[0]], args[1])
    else:  # one gradient per output (add_layer_norm has two)
        mod.backward(*(torch.empty_like(o) for o in (out if isinstance(out, tuple) else (out,))), *args)


def _parametrized(test: Callable) -> Iterator[dict]:
    """Every parameter combination of a test's ``pytest.mark.parametrize`` marks."""
    axes = []
    for mark in getattr(test, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names, values = mark.args[:2]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        rows = []
        for v in values:
            if type(v).__name__ == "ParameterSet":  # pytest.param(...)
                v = v.values
            elif len(names) == 1:
                v = (v,)
            rows.append(dict(zip(names, v)))
        axes.append(rows)
    for combo in itertools.product(*axes):
        merged = {}
        for part in combo:
            merged.update(part)
        yield merged


# Sources. Each yields Calls (directly, or through _capturing_calls around the public op). Numbers that live
# only inside a test's body are repeated here with the test named; everything else comes from the test
# modules' parametrize marks, constants and helpers.

def _src_window_attention_tests(calls: list) -> None:
    from tests.ops import test_window_attention_triton as t
    for p in _parametrized(t.test_gpu_swin_t_shapes):
        args = t._inputs(p["b_"], p["heads"], (7, 7), 32, n_mask=p["n_mask"], dtype=p["dtype"], device=META)
        calls.append(Call("test_window_attention_triton::test_gpu_swin_t_shapes", "window_attention", args, True))
    for p in _parametrized(t.test_gpu_windows_and_head_dims):
        args = t._inputs(16, 4, p["window"], p["d"], p["dv"], n_mask=4, dtype=torch.float16, device=META)
        calls.append(Call("test_window_attention_triton::test_gpu_windows_and_head_dims", "window_attention",
                          args, True))
    args = t._inputs(2048, 3, (7, 7), 32, n_mask=64, dtype=torch.float16, device=META)
    calls.append(Call("test_window_attention_triton::test_gpu_deterministic", "window_attention", args, True))


def _src_shifted_window_attention_tests(calls: list) -> None:
    from tests.ops import test_shifted_window_attention_triton as t
    name = "test_shifted_window_attention_triton::"
    for p in _parametrized(t.test_gpu_swin_t_shapes):
        h, w, heads = p["h"], p["w"], p["heads"]
        shift = (3, 3) if min(h, w) > 7 else (0, 0)
        qkv, table, qkv_bias = t._inputs(2, h, w, heads, 32, (7, 7), dtype=p["dtype"], device=META)
        calls.append(Call(name + "test_gpu_swin_t_shapes", "shifted_window_attention",
                          t._args(qkv, table, qkv_bias, heads, (7, 7), shift, p["pad_order"]), True))
    for p in _parametrized(t.test_gpu_windows_and_head_dims):
        window = p["window"]
        qkv, table, qkv_bias = t._inputs(2, 30, 27, 4, p["d"], window, dtype=torch.float16, device=META)
        args = t._args(qkv, table, qkv_bias, 4, window, (window[0] // 2, window[1] // 2), "pad_then_roll")
        calls.append(Call(name + "test_gpu_windows_and_head_dims", "shifted_window_attention", args, True))
    qkv, table, qkv_bias = t._inputs(2, 56, 56, 3, 32, (7, 7), dtype=torch.float16, device=META)
    calls.append(Call(name + "test_gpu_deterministic_and_auto_picks_a_fused_backend", "shifted_window_attention",
                      t._args(qkv, table, qkv_bias, 3, (7, 7), (3, 3), "roll_then_pad"), True))


def _src_patched_timm_swin(calls: list) -> None:
    """test_shifted_window_attention_triton::test_gpu_patched_timm_swin_matches_stock: a patched timm Swin-T,
    fp32, batch 2, 224², under no_grad."""
    try:
        import timm
    except ImportError:
        return
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=10).eval()
    sk.patch_timm_swin(model, backend="triton")
    model = model.to(META)
    with _capturing_calls(calls, "test_shifted_window_attention_triton::test_gpu_patched_timm_swin_matches_stock"):
        with torch.no_grad():
            model(torch.empty(2, 3, 224, 224, device=META))


def _src_semantic_attention_tests(calls: list) -> None:
    from tests.ops import test_semantic_attention_triton as t
    name = "test_semantic_attention_triton::"
    for p in _parametrized(t.test_gpu_stage_shapes):
        shape, k, c, window = t.GPU_CASES[p["case"]]
        tensors, grad = t.make(*shape, k, c, window is not None, scale=0.3, device=META)
        with _capturing_calls(calls, name + "test_gpu_stage_shapes"):
            t.run("triton", tensors, window, grad, None if p["dtype"] == torch.float32 else p["dtype"])
    tensors, grad = t.make(8, 40, 40, 150, 768, False, scale=0.3, device=META)
    with _capturing_calls(calls, name + "test_gpu_global_memory_is_linear_in_tokens"):
        t.run("triton", [x.bfloat16() if x is not None else None for x in tensors], None, grad)


def _src_prior_map_decode_tests(calls: list) -> None:
    from tests.ops import test_prior_map_decode_triton as t
    for p in _parametrized(t.test_gpu_semask_t_512):
        maps, grad = t.make([(128, 128), (64, 64), (32, 32), (16, 16)], b=2, k=150, device=META)
        with _capturing_calls(calls, "test_prior_map_decode_triton::test_gpu_semask_t_512"):
            t.run("triton", maps, grad, p["align_corners"], p["dtype"])


def _src_upsample_cross_entropy_tests(calls: list) -> None:
    from tests.ops import test_upsample_cross_entropy_triton as t
    for p in _parametrized(t.test_gpu_semask_t_512):
        logits, target = t.make(2, 150, 128, 128, (512, 512), device=META)
        with _capturing_calls(calls, "test_upsample_cross_entropy_triton::test_gpu_semask_t_512"):
            t.run("triton", logits, target, p["dtype"], avg_non_ignore=p["avg_non_ignore"],
                  align_corners=p["align_corners"])
    # test_loss_memory::test_gpu_peak_memory: batch 16, K 150, 128² -> 512², bf16
    logits = torch.empty(16, 150, 128, 128, device=META, dtype=torch.bfloat16).requires_grad_()
    target = torch.empty(16, 512, 512, device=META, dtype=torch.long)
    with _capturing_calls(calls, "test_loss_memory::test_gpu_peak_memory"):
        sk.upsample_cross_entropy(logits, target, backend="triton")


def _src_ms_deform_attn_tests(calls: list) -> None:
    """test_ms_deform_attn_triton::test_gpu_pixel_decoder_shapes: Mask2Former's pixel decoder, forward and
    backward."""
    from tests.ops import test_ms_deform_attn_triton as t
    for p in _parametrized(t.test_gpu_pixel_decoder_shapes):
        (value, spatial, start, loc, weights), _ = t.pixel_decoder(p["image"], 2, device="cpu")
        value, loc, weights = (x.to(device=META, dtype=p["dtype"]) for x in (value, loc, weights))
        spatial, start = spatial.to(META), start.to(META)
        calls.append(Call("test_ms_deform_attn_triton::test_gpu_pixel_decoder_shapes", "ms_deform_attn",
                          (value, spatial, start, loc, weights, False, "zeros"), True))


def _src_block_ops_tests(calls: list) -> None:
    """The gpu tests of the Swin block's ops (fc1 + GELU, proj/fc2 + residual, add + LayerNorm): Swin-T's stages
    at batch 8 in every dtype, forward and backward."""
    from tests.ops import test_add_layer_norm_triton as ln
    from tests.ops import test_linear_gelu_triton as gelu
    from tests.ops import test_linear_residual_triton as res
    made = []
    for p in _parametrized(gelu.test_gpu_swin_t_fc1):
        made.append(("test_linear_gelu_triton::test_gpu_swin_t_fc1", gelu.SPEC, p["dtype"],
                     gelu.inputs((p["tokens"],), p["c"], 4 * p["c"], device=META)))
    for p in _parametrized(res.test_gpu_swin_t):
        k = p["c"] if p["which"] == "proj" else 4 * p["c"]
        made.append(("test_linear_residual_triton::test_gpu_swin_t", res.SPEC, p["dtype"],
                     res.inputs((8, p["tokens"]), k, p["c"], scale=True, device=META)))
    for p in _parametrized(ln.test_gpu_swin_t_norm2):
        made.append(("test_add_layer_norm_triton::test_gpu_swin_t_norm2", ln.SPEC, p["dtype"],
                     ln.inputs((p["tokens"],), p["c"], device=META)))
    for source, spec, dtype, call in made:
        with _capturing_calls(calls, source):
            spec.run(call.to(dtype), "triton")


def _src_benchmarks(calls: list) -> None:
    """benchmarks/ops.py at every MODELS shape and dtype, and the ops with their own workloads there: its cases'
    ``op:triton`` candidates, forward and backward (the suite times both)."""
    from benchmarks import ops as bench
    original = bench._backends
    bench._backends = lambda op, *args: ["triton"]
    try:
        for model, (dname, dtype) in itertools.product(bench.MODELS, bench.DTYPES.items()):
            cases = [*bench.attention_cases(model, dtype, META, False, baselines=())]
            for name, spec in bench.specs().items():
                if name != "shifted_window_attention" and name not in bench.WORKLOAD_OPS:
                    cases += bench.spec_cases(spec, model, dtype, META, False)
            for case in cases:
                with _capturing_calls(calls, f"benchmarks.ops {model} {dname} {case.op}"):
                    case.candidates["op:triton"](**case.inputs())
        for (dname, dtype), name in itertools.product(bench.DTYPES.items(), bench.WORKLOAD_OPS):
            for case in bench.workload_cases(bench.specs()[name], dtype, META, False):  # the ops' own workloads
                with _capturing_calls(calls, f"benchmarks.ops {dname} {case.shape}"):
                    case.candidates["op:triton"](**case.inputs())
    finally:
        bench._backends = original


SOURCES = (_src_window_attention_tests, _src_shifted_window_attention_tests, _src_patched_timm_swin,
           _src_semantic_attention_tests, _src_prior_map_decode_tests, _src_upsample_cross_entropy_tests,
           _src_ms_deform_attn_tests, _src_block_ops_tests, _src_benchmarks)


def capture() -> tuple[list[Call], list[Launch]]:
    """Every backend call of every source, and the kernel launches their host code makes."""
    assert not _triton_utils.INTERPRETED, "tests.sm90 must run without TRITON_INTERPRET"
    calls: list[Call] = []
    for source in SOURCES:
        source(calls)
    launches = []
    for call in calls:
        log: list = []
        with _recording(log):
            _run_backend(call)
        launches += [Launch(k, a, kw, {call.source}) for k, a, kw in log]
    return calls, launches


# -------------------------------------------------------------------------------------------------- compiling

_BACKEND = None


def _specialize(launch: Launch):
    """(ASTSource, options, config key) exactly as Triton's launcher builds them for this launch, for sm_90.

    The key is what decides the build's shape: kernel, constexprs, pointer dtypes, num_warps, num_stages, and
    which runtime integers equal 1 (``_ones``). The launcher also specializes runtime integers divisible by 16;
    launches that differ only there share one build here (the first one captured), which keeps the number of
    builds far below the number of launches.
    """
    global _BACKEND
    if _BACKEND is None:
        _BACKEND = make_backend(SM90)
    kernel = launch.kernel
    kwargs = dict(launch.kwargs)
    kwargs["debug"] = kwargs.get("debug", kernel.debug) or triton.knobs.runtime.debug
    kwargs["instrumentation_mode"] = triton.knobs.compilation.instrumentation_mode
    binder = create_function_from_signature(kernel.signature, kernel.params, _BACKEND)
    bound, specialization, options = binder(*launch.args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(_BACKEND, kwargs, bound, specialization, options)
    src = ASTSource(kernel, signature, constexprs, attrs)
    key = (kernel.fn.__module__, kernel.fn.__name__, tuple(sorted(_constexprs(launch, src).items())),
           tuple(v for v in signature.values() if v.startswith("*")), options.num_warps, options.num_stages,
           _ones(launch))
    return src, options, key


def _ones(launch: Launch) -> tuple:
    """The runtime integer parameters equal to 1 (Triton specializes them to the constant): a loop whose trip
    count is then 1 compiles to another program (no loop-invariant hoisting, no pipeline) with other register
    needs, so those builds are kept apart from the general ones."""
    kernel = launch.kernel
    found = []
    for i, name in enumerate(kernel.arg_names):
        value = launch.args[i] if i < len(launch.args) else launch.kwargs.get(name)
        if not kernel.params[i].is_constexpr and type(value) is int and value == 1:
            found.append(name)
    return tuple(found)


def _constexprs(launch: Launch, src) -> dict:
    """The kernel's ``tl.constexpr`` parameters and their values (not the launcher's specialized integers)."""
    return {launch.kernel.arg_names[k[0]]: _plain(v) for k, v in src.constants.items()
            if launch.kernel.params[k[0]].is_constexpr}


def _cuobjdump() -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def _dots(ttgir: str) -> list[dict]:
    """Every dot of the TTGIR: whether it needs tensor cores (16-bit operands, or a TF32 input precision) and
    whether it got them (a warp-group dot, or a dot whose result layout is an ``nvidia_mma``)."""
    aliases = dict(re.findall(r"^(#\w+) = (#[\w.]+)", ttgir, re.M))
    dots = []
    for line in ttgir.splitlines():
        m = re.search(r"= (tt\.dot|ttng\.warp_group_dot) ", line)
        if not m:
            continue
        operands = line.split("->")[0]
        needs = bool(re.search(r"x(bf16|f16)\b|xf16,|xbf16,", operands)) or "inputPrecision = tf32" in line
        result = re.search(r"->\s*tensor<[^,]+,\s*(#\w+)", line)
        layout = aliases.get(result.group(1), result.group(1)) if result else ""
        mma = m.group(1) == "ttng.warp_group_dot" or "nvidia_mma" in layout
        dots.append({"needs_tensor_cores": needs, "tensor_cores": mma})
    return dots


def compile_one(index: int) -> dict:
    """Compile launch ``index`` of the module-level ``_TODO`` for sm_90 and measure it."""
    launch = _TODO[index]
    src, options, _ = _specialize(launch)
    start = time.perf_counter()
    compiled = triton.compile(src, target=SM90, options=options.__dict__)
    seconds = time.perf_counter() - start
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        usage = subprocess.run([_cuobjdump(), "-res-usage", f.name], capture_output=True, text=True,
                               check=True).stdout
    res = dict(re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", usage))
    ptx = compiled.asm["ptx"]
    constexprs = _constexprs(launch, src)
    return {
        "kernel": f"{_family(launch.kernel.fn.__module__)}.{launch.kernel.fn.__name__}",
        "dtype": _dtype_of(launch),
        "num_warps": options.num_warps,
        "num_stages": options.num_stages,
        "constexprs": constexprs,
        "shared": int(compiled.metadata.shared),
        "registers": int(res.get("REG", -1)),
        "stack": int(res.get("STACK", -1)),  # bytes of stack frame per thread: spilled registers live there
        "spills": int(res.get("STACK", 0)) // 4,  # as Triton's n_spills counts them (local bytes / 4)
        "dots": _dots(compiled.asm["ttgir"]),
        "wgmma": len(re.findall(r"\bwgmma\.mma_async\.", ptx)),
        "mma_sync": len(re.findall(r"\bmma\.sync\.", ptx)),
        "compile_s": round(seconds, 2),
        "sources": sorted(launch.sources),
    }


def _plain(v):
    return v if isinstance(v, (int, float, bool, str, type(None))) else str(v)


def _dtype_of(launch: Launch) -> str:
    """The floating dtype of the launch's first floating tensor argument in the kernel's parameter order (the
    input's dtype), passed by position or by keyword."""
    names = launch.kernel.arg_names
    values = [launch.args[i] if i < len(launch.args) else launch.kwargs.get(name) for i, name in enumerate(names)]
    for a in values:
        if isinstance(a, torch.Tensor) and a.dtype.is_floating_point:
            return str(a.dtype).replace("torch.", "")
    return "none"


_TODO: list[Launch] = []


def distinct(launches: list[Launch]) -> list[Launch]:
    """One launch per distinct build (see ``_specialize``), with the sources merged."""
    seen: dict = {}
    for launch in launches:
        key = _specialize(launch)[2]
        if key in seen:
            seen[key].sources |= launch.sources
        else:
            seen[key] = Launch(launch.kernel, launch.args, launch.kwargs, set(launch.sources))
    return list(seen.values())


def compile_all(launches: list[Launch], jobs: int, progress: Callable[[dict], None] = lambda r: None) -> list[dict]:
    """Compile every distinct launch, ``jobs`` processes at a time (forked: they inherit the launches)."""
    global _TODO
    _TODO = distinct(launches)
    results: list = [None] * len(_TODO)
    if jobs <= 1:
        for i in range(len(_TODO)):
            results[i] = compile_one(i)
            progress(results[i])
        return results
    # The slowest (fp32, wide) builds first, so that the pool does not end on one long ptxas run.
    order = sorted(range(len(_TODO)), key=lambda i: _dtype_of(_TODO[i]) != "float32")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = {pool.submit(compile_one, i): i for i in order}
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
            progress(results[futures[future]])
    return results


def _line(r: dict) -> str:
    tiles = ",".join(f"{k}={v}" for k, v in r["constexprs"].items() if k.startswith(("BLOCK", "K_PAD", "D_PAD",
                                                                                     "DV_PAD", "NK_PAD")))
    tc = sum(d["tensor_cores"] for d in r["dots"])
    return (f"{r['kernel']:<40} {r['dtype']:<8} w{r['num_warps']} s{r['num_stages']} {tiles:<44} "
            f"shared {r['shared']:>6} regs {r['registers']:>3} stack {r['stack']:>5} "
            f"dots {len(r['dots'])} tc {tc} (wgmma {r['wgmma']}, mma {r['mma_sync']}) {r['compile_s']:.1f}s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    calls, launches = capture()
    captured = time.perf_counter()
    todo = distinct(launches)
    if not args.quiet:
        print(f"triton {triton.__version__}: {len(calls)} backend calls, {len(launches)} launches, "
              f"{len(todo)} distinct compilations (captured in {captured - start:.1f}s)", flush=True)
    results = compile_all(launches, args.jobs, (lambda r: None) if args.quiet else
                          (lambda r: print(_line(r), flush=True)))
    summary = {"triton": triton.__version__, "python": sys.version.split()[0], "shared_limit": SHARED_LIMIT,
               "kernels": sorted(kernels()), "calls": len(calls), "launches": len(launches),
               "capture_s": round(captured - start, 1), "total_s": round(time.perf_counter() - start, 1),
               "results": results}
    if not args.quiet:
        print(f"done in {summary['total_s']}s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
