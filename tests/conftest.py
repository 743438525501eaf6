
import pytest
import torch
from fixtures.data_fixtures import make_fixture_data

from nextmm.model import NextMM


@pytest.fixture(scope="session")
def tiny_model() -> NextMM:
    """The tiny random model, built once; tests that change it must build their own."""
    torch.manual_seed(0)
    return NextMM.from_config("tiny")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny tensors run fastest on one thread, and two threads on a busy 2-core machine crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A small data folder in every NExT-GPT format, with generated media and a few bad samples."""
    return make_fixture_data(tmp_path_factory.mktemp("data"))
