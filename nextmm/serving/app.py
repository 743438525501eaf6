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


def build_app(build: Callable[[], Any], *, model_name: str, output_dir: str | Path, limits: Limits = Limits(),
              worker: TurnWorker | None = None) -> FastAPI:
    """The FastAPI app serving the model ``build()`` makes (on the worker's thread: nextmm.serving.worker);
    turns' files go under ``output_dir/turns``."""
    worker = worker or TurnWorker(build, max_queue=limits.max_queue)
    files = TurnFiles(output_dir, keep=limits.keep_turns)
    app = build_api(worker, files, limits, model_name)
    example = example_image(Path(output_dir) / "examples")
    page = build_page(worker, files, limits, model_name, example)
    return gr.mount_gradio_app(app, page, path="/", allowed_paths=[str(files.root), str(example.parent)],
                               max_file_size=limits.max_upload_bytes, footer_links=["api"], css=CSS)


def example_image(folder: Path) -> Path:
    """A toyworld beach (a surfer on the waves) for the page's example with an attached picture."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "beach.png"
    if not path.exists():
        image = Image.fromarray(render_image(sample_scene("beach", seed=3)))
        image.resize((image.width * EXAMPLE_SCALE, image.height * EXAMPLE_SCALE), Image.NEAREST).save(path)
    return path
