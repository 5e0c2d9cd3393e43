"""Bad sizes, batches and repeats are refused by the benchmark commands' argument parser, naming the option."""
import pytest

from benchmarks import __main__ as cli


@pytest.mark.parametrize("argv,option", [
    (["compare-swin", "--batch", "0"], "--batch"),
    (["compare-swin", "--img-size", "0"], "--img-size"),
    (["compare-swin", "--repeats", "0"], "--repeats"),
    (["compare-swin", "--warmup", "-1"], "--warmup"),
    (["compare-swin", "--batch", "two"], "--batch"),
    (["ops", "--repeats", "0"], "--repeats"),
    (["flops", "--img-size", "-224"], "--img-size"),
])
def test_bad_sizes_are_refused(argv, option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and ("must be >=" in err or "expected an integer" in err), err
