import pytest
import torch

from nextmm.model import NextMM


@pytest.fixture(scope="session")
def tiny_model() -> NextMM:
    """The tiny random model, built once; tests that change it must build their own."""
    torch.manual_seed(0)
    return NextMM.from_config("tiny")
