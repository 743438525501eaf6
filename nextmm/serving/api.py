"""The HTTP API: OpenAI's chat completions (nextmm.serving.openai_chat), the models list, health, and the
served turns' files. Every error is a JSON body ``{"error": {"message", "type", "param", "code"}}`` with a
4xx status for a request the server cannot serve as sent; the server goes on serving.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from nextmm.errors import UserError
from nextmm.inference.conversation import GenerationSettings, Turn
from nextmm.inference.prompt import Message
from nextmm.serving.files import TurnFiles, mime_type
from nextmm.serving.limits import Limits
from nextmm.serving.openai_chat import RequestError, completion, parse_request
from nextmm.serving.uploads import UploadError
from nextmm.serving.worker import Busy, TurnTimeout, TurnWorker

log = logging.getLogger(__name__)


def build_api(worker: TurnWorker, files: TurnFiles, limits: Limits, model_name: str) -> FastAPI:
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        worker.close()

    app = FastAPI(title="nextmm", summary=f"any-to-any chat with {model_name}", lifespan=lifespan)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        log.info("%s %s: %d %s", request.method, request.url.path, error.status, error)
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse(RequestError(str(error.detail), status=error.status_code, code=str(error.status_code))
                            .body(), status_code=error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(RequestError(f"bad request: {error.errors()[0].get('msg', error)}").body(), status_code=400)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(RequestError(f"the server failed on this request ({type(error).__name__}); it goes on "
                                         "serving", status=500, kind="server_error").body(), status_code=500)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model_name, "turns_pending": worker.pending,
                "turns_completed": worker.completed}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [_model_card(model_name, started)]}

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str) -> dict:
        if model_id != model_name:
            raise RequestError(f"the model {model_id!r} is not served here: this server serves {model_name!r}",
                               status=404, param="model", code="model_not_found")
        return _model_card(model_name, started)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> dict:
        body = await read_json(request, limits.max_request_bytes)
        chat = await run_in_threadpool(parse_request, body, model_name, limits)  # decodes base64: off the loop
        settings = GenerationSettings(progress=False).updated(**chat.settings)
        turn_id = files.new_id()

        def finish(turn: Turn, messages: list[Message]) -> tuple[Turn, list]:  # on the model's thread
            if chat.modalities is not None:  # exactly the media asked for
                turn.outputs = [(m, i) for m, i in turn.outputs if m in chat.modalities]
            return turn, files.write(turn_id, turn, prompt=messages[-1].text, model=model_name, seed=settings.seed)

        try:
            turn, written = await worker.answer_async(chat.messages, settings, limits.request_timeout_s, finish)
        except Busy as error:
            raise RequestError(str(error), status=503, kind="server_error", code="busy") from None
        except TurnTimeout as error:
            raise RequestError(str(error), status=504, kind="timeout", code="timeout") from None
        except UploadError as error:
            raise RequestError(str(error), param=error.label, code="invalid_media") from None
        except UserError as error:  # e.g. the conversation is longer than the model's context
            raise RequestError(str(error), param="messages") from None
        base = str(request.base_url)
        return completion(turn, turn_id=turn_id, model_name=model_name, files=written,
                          url=lambda path: f"{base}outputs/{turn_id}/{path.name}")

    @app.get("/outputs/{turn_id}/{name}")
    async def output_file(turn_id: str, name: str) -> FileResponse:
        path = files.path(turn_id, name)
        if path is None:
            raise RequestError(f"no such output: /outputs/{turn_id}/{name}", status=404, code="not_found")
        return FileResponse(path, media_type=mime_type(name), filename=name)

    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def unknown(rest: str, request: Request) -> None:
        if rest == "chat/completions" or rest.startswith("models"):
            raise RequestError(f"{request.method} is not allowed on /v1/{rest}", status=405, code="method_not_allowed")
        raise RequestError(f"unknown endpoint /v1/{rest}: this server has /v1/chat/completions and /v1/models",
                           status=404, code="unknown_url")

    return app


async def read_json(request: Request, max_bytes: int):
    """The request body as JSON, refused past ``max_bytes`` (413) before more is read."""
    too_large = RequestError(f"the request is larger than this server's limit of {max_bytes / 2**20:g} MB",
                             status=413, code="request_too_large")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    try:
        return await run_in_threadpool(json.loads, b"".join(chunks))
    except (ValueError, UnicodeDecodeError):
        raise RequestError("the request body is not valid JSON") from None


def _model_card(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "nextmm"}
