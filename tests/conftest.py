
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


class Killed(Exception):
    """A training run stopped by a test, as a kill would stop it."""


class Kill:
    """``kill.after(n)``: the training runs that follow stop at the end of their n-th step in all (counted over
    every loop: a recipe's phases too), after its optimizer step and before its checkpoint, raising Killed."""

    error = Killed

    def __init__(self, monkeypatch):
        from nextmm.training.run import Progress

        self.left = None
        end_step = Progress.end_step

        def end_step_or_die(progress, step, lr):
            metrics = end_step(progress, step, lr)
            if self.left is not None:
                self.left -= 1
                if self.left == 0:
                    self.left = None
                    raise Killed(f"killed at step {step} of {progress.name}")
            return metrics

        monkeypatch.setattr(Progress, "end_step", end_step_or_die)

    def after(self, steps: int) -> None:
        self.left = steps


@pytest.fixture
def kill(monkeypatch) -> Kill:
    return Kill(monkeypatch)
