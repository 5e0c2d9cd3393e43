"""A source checkout without the compiled extension must not silently stand in for an installed build that has
it (issue 16: after `pip install .`, `info` run from the repository root said "not built")."""
import sys
from pathlib import Path

import semask_kernels
from semask_kernels import info

SOURCE = Path(semask_kernels.__file__).resolve().parent
EXT = "_C.cpython-311-x86_64-linux-gnu.so"


def _installed_build(site: Path, with_ext: bool = True) -> Path:
    """A site-packages folder holding an installed semask-kernels (a wheel's RECORD, optionally with _C)."""
    pkg = site / "semask_kernels"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    record = ["semask_kernels/__init__.py,,"]
    if with_ext:
        (pkg / EXT).write_bytes(b"\x7fELF")
        record.append(f"semask_kernels/{EXT},,")
    meta = site / "semask_kernels-0.1.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: semask-kernels\nVersion: 0.1.0\n")
    (meta / "RECORD").write_text("\n".join(record + ["semask_kernels-0.1.0.dist-info/RECORD,,"]) + "\n")
    return pkg


def test_source_tree_hiding_an_installed_build_is_named(tmp_path, monkeypatch):
    installed = _installed_build(tmp_path / "site")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site"), *sys.path])
    message = info.shadowing(SOURCE, has_ext=False)
    assert message is not None
    assert str(SOURCE) in message and str(installed.resolve()) in message and "-e ." in message


def test_no_message_when_the_imported_package_has_the_extension_or_none_is_installed(tmp_path, monkeypatch):
    _installed_build(tmp_path / "site")
    _installed_build(tmp_path / "plain", with_ext=False)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site"), *sys.path])
    assert info.shadowing(SOURCE, has_ext=True) is None
    monkeypatch.setattr(sys, "path", [str(tmp_path / "plain"), *sys.path[1:]])
    assert info.shadowing(SOURCE, has_ext=False) is None


def test_the_installed_package_itself_is_not_a_shadow(tmp_path, monkeypatch):
    installed = _installed_build(tmp_path / "site")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site"), *sys.path])
    assert info.shadowing(installed, has_ext=False) is None  # no setup.py beside it: not a source tree
