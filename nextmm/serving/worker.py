"""The one thread that owns the model: it builds it, reads requests' media, runs turns and writes their files.

Requests from the API and the page all come here, so two turns never run at once (the model, its KV cache,
torch's global seed and the lazily loaded decoders are not shared safely), and each caller gets back the
Future of its own turn. A full queue refuses at once (Busy); a caller that stops waiting (TurnTimeout)
cancels its turn if it has not started, and stops it at its next token or denoising step if it has, so the
model goes on to the turns still wanted.

Every torch operation of the server runs on this thread, model building included. torch's CPU ops run on
OpenMP, whose thread team belongs to the thread that starts it: a second thread doing torch work (building
the model on the main thread, or decoding an upload on a request thread) brings a second team, and once
OpenMP manages more threads than there are cores it stops letting idle threads spin, so every small op of a
turn waits for sleeping threads to wake. Measured on 2 cores: a surf-vlog turn took 2.5 s with all torch work
on one thread and 4.3 s with the model built on another (docs/benchmarks.md, "Serving").
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from nextmm.errors import UserError
from nextmm.inference.conversation import GenerationSettings, Turn, generate_turn
from nextmm.inference.prompt import Message
from nextmm.serving.uploads import read_uploads

# (the Turn, the messages with their uploads read) -> what the caller gets; runs on the model's thread
Finish = Callable[[Turn, list[Message]], Any]


class Busy(UserError):
    """The queue holds as many turns as the server allows."""


class TurnTimeout(UserError):
    """A turn did not finish within the request timeout (waiting included)."""


class TurnWorker:
    def __init__(self, build: Callable[[], Any], *, max_queue: int, run_turn: Callable = generate_turn):
        """``build()`` makes the model, on the worker's thread; ``run_turn(model, messages, settings, stop)``
        answers (generate_turn: ``stop`` is the threading.Event set when the caller gives up)."""
        self.max_queue = max_queue
        self.run_turn = run_turn  # tests put a slow one here
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nextmm-model")
        self.model = self._executor.submit(build).result()
        self._lock = threading.Lock()
        self._pending = 0  # submitted and not finished: the one running plus those waiting
        self._stops: dict[Future, threading.Event] = {}  # each unfinished turn's stop event
        self.completed = 0

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, messages: list[Message], settings: GenerationSettings, finish: Finish | None = None) -> Future:
        """Queue a turn; its Future gives ``finish(turn, messages)`` (the Turn without ``finish``), or the
        exception of reading an upload, the turn or ``finish``. Raises Busy when the queue is full."""
        with self._lock:
            if self._pending >= self.max_queue:
                raise Busy(f"the server is busy: {self._pending} turns are waiting for the model; try again shortly")
            self._pending += 1
            stop = threading.Event()
            future = self._executor.submit(self._turn, list(messages), settings, finish, stop)
            self._stops[future] = stop
        future.add_done_callback(self._finished)
        return future

    def _turn(self, messages: list[Message], settings: GenerationSettings, finish: Finish | None,
              stop: threading.Event):
        messages = read_uploads(messages)
        turn = self.run_turn(self.model, messages, settings, stop)
        return turn if finish is None else finish(turn, messages)

    def _finished(self, future: Future) -> None:
        with self._lock:
            self._pending -= 1
            self._stops.pop(future, None)
            if not future.cancelled():
                self.completed += 1

    def give_up(self, future: Future) -> None:
        """The caller no longer wants this turn: drop it if it waits, stop it if it runs."""
        if not future.cancel():
            with self._lock:
                stop = self._stops.get(future)
            if stop is not None:
                stop.set()

    def answer(self, messages: list[Message], settings: GenerationSettings, timeout_s: float,
               finish: Finish | None = None):
        """Queue a turn and wait for it (from a thread)."""
        future = self.submit(messages, settings, finish)
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            self.give_up(future)
            raise TurnTimeout(_timeout_message(timeout_s)) from None

    async def answer_async(self, messages: list[Message], settings: GenerationSettings, timeout_s: float,
                           finish: Finish | None = None):
        """Queue a turn and wait for it (from the event loop, which keeps serving meanwhile)."""
        future = self.submit(messages, settings, finish)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except asyncio.TimeoutError:
            self.give_up(future)
            raise TurnTimeout(_timeout_message(timeout_s)) from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _timeout_message(timeout_s: float) -> str:
    return f"the turn did not finish within this server's limit of {timeout_s:g} s (waiting for the model included)"
