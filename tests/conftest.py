"""Fixtures shared by the unit tests."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread is as fast and does not collapse when other jobs share the 2 cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
