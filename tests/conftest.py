"""Fixtures shared by the whole suite."""

import pytest
import torch

_DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=_DEVICES)
def device(request) -> torch.device:
    """Runs a test once on the CPU and once more on CUDA when a GPU is present."""
    return torch.device(request.param)
