import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: splitting their small ops over threads costs more than it saves, and on a
    loaded 2-core machine each parallel op waits for descheduled workers (2-3x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
