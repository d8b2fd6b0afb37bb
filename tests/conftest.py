"""Shared fixtures: the same tests run on CUDA when a GPU is present."""
from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)

# The models under test are small: one thread is fastest and avoids oversubscribing shared CPUs.
torch.set_num_threads(1)
