"""Model tests train tiny ensembles: run torch on one thread."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small training batches: 1 thread (2 threads on 2 busy shared cores ran 15x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
