"""The server put together: the API at /v1, the files at /outputs, the page at /, around one worker and model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import FastAPI
from PIL import Image

from nextmm.serving.api import build_api
from nextmm.serving.files import TurnFiles
from nextmm.serving.limits import Limits
from nextmm.serving.page import CSS, build_page
from nextmm.serving.worker import TurnWorker
from nextmm.toyworld.render import render_image, sample_scene

EXAMPLE_SCALE = 4  # the toyworld's 64 px picture, shown larger
QUEUE_POLL_S, PROGRESS_POLL_S = 0.02, 0.05  # Gradio's defaults on Linux: 0.001 and 0.01


def build_app(build: Callable[[], Any], *, model_name: str, output_dir: str | Path, limits: Limits = Limits(),
              worker: TurnWorker | None = None) -> FastAPI:
    """The FastAPI app serving the model ``build()`` makes (on the worker's thread: nextmm.serving.worker);
    turns' files go under ``output_dir/turns``."""
    worker = worker or TurnWorker(build, max_queue=limits.max_queue)
    files = TurnFiles(output_dir, keep=limits.keep_turns)
    app = build_api(worker, files, limits, model_name)
    example = example_image(Path(output_dir) / "examples")
    page = build_page(worker, files, limits, model_name, example)
    app = gr.mount_gradio_app(app, page, path="/", allowed_paths=[str(files.root), str(example.parent)],
                              max_file_size=limits.max_upload_bytes, footer_links=["api"], css=CSS)
    quiet_queue(page)
    return app


def quiet_queue(page: gr.Blocks) -> None:
    """Let Gradio's queue look for new page events every 20 ms and send progress every 50 ms, not every 1 and
    10 ms: its polling kept the event loop awake a thousand times a second (7 % of a core when idle), taking
    the GIL and a core from the turns; on 2 cores surf-vlog turns ran 15 % slower (docs/benchmarks.md)."""
    for name, seconds in (("sleep_when_free", QUEUE_POLL_S), ("progress_update_sleep_when_free", PROGRESS_POLL_S)):
        if not hasattr(page._queue, name):  # Gradio renamed it: the pin in pyproject.toml moved past 6.31
            raise RuntimeError(f"gradio {gr.__version__}'s queue has no {name}: update nextmm.serving.app.quiet_queue")
        setattr(page._queue, name, seconds)


def example_image(folder: Path) -> Path:
    """A toyworld beach (a surfer on the waves) for the page's example with an attached picture."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "beach.png"
    if not path.exists():
        image = Image.fromarray(render_image(sample_scene("beach", seed=3)))
        image.resize((image.width * EXAMPLE_SCALE, image.height * EXAMPLE_SCALE), Image.NEAREST).save(path)
    return path
