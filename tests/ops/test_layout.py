"""The op layout contract (``semask_kernels/ops/_spec.py``): every op folder has the same files and a spec, and
no op folder imports another (shared code lives in ``semask_kernels/kernels/`` or ``ops/_*.py``)."""
import ast
from pathlib import Path

import pytest

import semask_kernels
from semask_kernels.ops._spec import specs

OPS_DIR = Path(semask_kernels.__file__).parent / "ops"
OP_FOLDERS = sorted(p.name for p in OPS_DIR.iterdir() if p.is_dir() and (p / "__init__.py").is_file()
                    and not p.name.startswith("_"))


def _imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` (top level or inside functions)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


@pytest.mark.parametrize("op", OP_FOLDERS)
def test_no_op_folder_imports_another(op):
    bad = []
    for path in sorted((OPS_DIR / op).glob("*.py")):
        for line, module in _imported_modules(path, f"semask_kernels.ops.{op}"):
            parts = module.split(".")
            if parts[:2] == ["semask_kernels", "ops"] and len(parts) > 2 and parts[2] in OP_FOLDERS \
                    and parts[2] != op:
                bad.append(f"ops/{op}/{path.name}:{line} imports {module}")
    assert not bad, "an op folder imports another op's folder (move the shared code to semask_kernels/kernels/):\n" \
        + "\n".join(bad)


def test_the_import_check_sees_relative_and_lazy_imports(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("from ..other.triton import k\n\ndef f():\n    from ..._env import x\n")
    modules = [m for _, m in _imported_modules(source, "semask_kernels.ops.mine")]
    assert "semask_kernels.ops.other.triton" in modules and "semask_kernels._env" in modules


@pytest.mark.parametrize("op", OP_FOLDERS)
def test_every_op_folder_has_the_file_contract_and_a_spec(op):
    files = {p.name for p in (OPS_DIR / op).glob("*.py")}
    assert {"__init__.py", "op.py", "reference.py", "torch_path.py", "spec.py"} <= files, sorted(files)
    assert op in specs() and op in semask_kernels.__all__
    assert callable(getattr(specs()[op].op_module, "arguments")), f"ops/{op}/op.py needs arguments()"


@pytest.mark.parametrize("op", sorted(specs()))
def test_every_op_has_its_semantics_in_the_repository(op):
    """docs/ops.md holds a section per op, and the op's reference (the truth) points to it."""
    doc = OPS_DIR.parents[1] / "docs" / "ops.md"
    sections = [line[3:].strip() for line in doc.read_text(encoding="utf-8").splitlines() if line.startswith("## ")]
    assert op in sections, f"docs/ops.md has no section '## {op}' (sections: {sections})"
    reference = ast.get_docstring(ast.parse((OPS_DIR / op / "reference.py").read_text(encoding="utf-8")))
    assert f"docs/ops.md, section ``{op}``" in reference, f"ops/{op}/reference.py does not point to docs/ops.md"
