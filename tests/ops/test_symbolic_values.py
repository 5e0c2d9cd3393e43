"""Every op's value checks skip what has no values: meta tensors, fake tensors, ``torch.compile`` with dynamic
shapes (symbolic sizes and numbers, e.g. the default scale d ** -0.5 as a SymFloat) and ``torch.jit.trace``,
which records the registered op as TorchScript does. Each op runs on the sample of its spec ("tiny" size)."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import semask_kernels as sk
from semask_kernels.ops import _spec
from tests.utils import assert_close

SPECS = _spec.specs()
OPS = sorted(SPECS)


def _call(name):
    torch.manual_seed(0)
    return SPECS[name].sample(_spec.SIZES["tiny"], torch.float32, "cpu")


def _loss(out):
    return out.float().sum() if isinstance(out, torch.Tensor) else sum(o.float().sum() for o in out)


def _function(name):
    """The op's public function with one tensor out: an op with several outputs (add_layer_norm's (s, y)) has them
    flattened and joined, so every check below sees each output."""
    fn = SPECS[name].function

    def one(**kwargs):
        out = fn(**kwargs)
        return torch.cat([o.flatten() for o in out]) if isinstance(out, (tuple, list)) else out
    return one


@pytest.mark.parametrize("name", OPS)
def test_meta_tensors_forward_and_backward(name):
    call = _call(name)
    real = call.to()
    expected = _function(name)(**real.kwargs)
    meta = call.to(device="meta")
    out = _function(name)(**meta.kwargs)
    assert out.device.type == "meta" and out.shape == expected.shape and out.dtype == expected.dtype
    if meta.leaves():
        _loss(expected).backward()
        _loss(out).backward()
        for (leaf_name, leaf), (_, ref) in zip(meta.leaves(), real.leaves()):
            assert (leaf.grad is None) == (ref.grad is None), leaf_name
            assert leaf.grad is None or leaf.grad.shape == leaf.shape, leaf_name


@pytest.mark.parametrize("name", OPS)
def test_fake_tensors(name):
    call = _call(name).to()
    expected = _function(name)(**call.kwargs)
    mode = FakeTensorMode()
    fake = {k: (mode.from_tensor(v) if isinstance(v, torch.Tensor) else
                [mode.from_tensor(t) for t in v] if isinstance(v, (list, tuple)) and v and
                isinstance(v[0], torch.Tensor) else v) for k, v in call.kwargs.items()}
    with mode:
        out = _function(name)(**fake)
    assert out.shape == expected.shape and out.dtype == expected.dtype


@pytest.mark.parametrize("name", OPS)
def test_compile_fullgraph_dynamic(name):
    call = _call(name).to()
    expected = _function(name)(**call.kwargs)
    torch._dynamo.reset()
    fn = _function(name)
    compiled = torch.compile(lambda **kw: fn(**kw), fullgraph=True, dynamic=True,
                             backend="aot_eager")
    assert_close(compiled(**call.kwargs), expected, name=name, scale=10)


def test_shifted_window_attention_default_scale_compiles_with_dynamic_shapes():
    """The repro: no explicit scale, so d ** -0.5 of a symbolic d reaches the scale check as a SymFloat."""
    qkv, table = torch.randn(1, 8, 9, 3 * 2 * 4), torch.randn(169, 2)
    torch._dynamo.reset()
    f = torch.compile(lambda q, t: sk.shifted_window_attention(q, t, num_heads=2, window_size=7, shift_size=3),
                      fullgraph=True, dynamic=True, backend="aot_eager")  # the checks run in dynamo's trace
    assert_close(f(qkv, table), sk.shifted_window_attention(qkv, table, num_heads=2, window_size=7, shift_size=3),
                 name="compiled")
    with pytest.raises(Exception, match="scale must be a finite number"):
        torch.compile(lambda q, t, s: sk.shifted_window_attention(q, t, num_heads=2, window_size=7, scale=s),
                      fullgraph=True, dynamic=True, backend="aot_eager")(qkv, table, float("nan"))


@pytest.mark.parametrize("name", OPS)
def test_jit_trace_matches_eager(name):
    """Traced with the tensors (list members too) as inputs; the trace reproduces eager, and its gradients."""
    call = _call(name).to()
    layout = {k: (len(v) if isinstance(v, (list, tuple)) and v and isinstance(v[0], torch.Tensor) else
                  -1 if isinstance(v, torch.Tensor) else None) for k, v in call.kwargs.items()}
    flat = [t for k, v in call.kwargs.items() if layout[k] is not None for t in ([v] if layout[k] < 0 else v)]

    def fn(*tensors):
        kwargs, at = {}, 0
        for k, v in call.kwargs.items():
            n = layout[k]
            kwargs[k] = v if n is None else tensors[at] if n < 0 else list(tensors[at:at + n])
            at += 0 if n is None else 1 if n < 0 else n
        return _function(name)(**kwargs)

    traced = torch.jit.trace(fn, tuple(flat), check_trace=False)
    expected, got = fn(*flat), traced(*flat)
    assert_close(got, expected, name=name, scale=10)
    if call.leaves():
        leaves = [t for _, t in call.leaves()]
        for a, b in zip(torch.autograd.grad(_loss(got), leaves, allow_unused=True),
                        torch.autograd.grad(_loss(expected), leaves, allow_unused=True)):
            if a is None or b is None:  # an unused input: None on one path, zeros on the other
                assert not (a if b is None else b).any()
            else:
                assert_close(a, b, name=f"{name} grad", scale=10)


def test_meta_labels_are_not_read():
    logits = torch.randn(2, 5, 4, 4, device="meta", requires_grad=True)
    target = torch.randint(0, 5, (2, 16, 16), device="meta")
    loss = sk.upsample_cross_entropy(logits, target)
    loss.backward()
    assert loss.device.type == "meta" and logits.grad.shape == logits.shape
    with pytest.raises(ValueError, match="target holds label 7"):  # real labels are still checked
        sk.upsample_cross_entropy(torch.randn(2, 5, 4, 4), torch.full((2, 16, 16), 7))
