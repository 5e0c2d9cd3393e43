import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The training tests use tiny tensors, for which one thread is several times faster than two on a shared CPU.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
