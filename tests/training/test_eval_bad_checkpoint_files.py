"""semask-eval on hostile checkpoint files: a .pkl that declares arrays it never fills (it would load
uninitialized memory) and a torch zip named .pkl end with one ``error:`` line and exit status 2, writing no
metrics."""
import pickle
import struct

import torch
from semask_models.cli import main as cli_main

from tests.training.fakes import TINY


def _sets(items):
    return [a for s in items for a in ("--set", s)]


def _uninitialized_pkl(path):
    """{"model": {"backbone.patch_embed.proj.bias": np.ndarray((4,), float32)}}: REDUCE, no state."""
    key = b"backbone.patch_embed.proj.bias"
    dtype = (b"cnumpy\ndtype\n(X\x02\x00\x00\x00f4\x89\x88tR(J\x03\x00\x00\x00X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xff"
             b"J\xff\xff\xff\xffJ\x00\x00\x00\x00tb")
    array = b"cnumpy\nndarray\n((K\x04t" + dtype + b"tR"
    body = (b"}X\x05\x00\x00\x00model}X" + struct.pack("<I", len(key)) + key + array + b"ss.")
    path.write_bytes(b"\x80\x02" + body)
    assert isinstance(pickle.loads(path.read_bytes())["model"][key.decode()], object)  # a valid pickle
    return path


def test_eval_refuses_hostile_checkpoint_files_with_one_error_line(tmp_path, capsys):
    torch.save({"w": torch.zeros(2)}, tmp_path / "zip.pkl")
    for path, message in ((_uninitialized_pkl(tmp_path / "uninit.pkl"), "declared but never filled"),
                          (tmp_path / "zip.pkl", "is a PyTorch zip checkpoint")):
        out = tmp_path / f"out_{path.stem}"
        code = cli_main(["eval", "synthetic-tiny", "--checkpoint", str(path), "--work-dir", str(out),
                         *_sets(TINY + ["data.synthetic.num_val=2"])])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error:") and message in err and "Traceback" not in err, err
        assert not list(out.glob("eval_*.json"))
