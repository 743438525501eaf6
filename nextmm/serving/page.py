"""The web page (Gradio): a multi-turn chat with media in and out, on the server's one model.

Each browser session keeps its conversation (nextmm Messages, with the uploads read) in a gr.State; a turn
goes through the same worker as the API. An upload that cannot be used (corrupt, unsupported, too large, too
many) is answered with a readable note in the chat, and the conversation goes on without that message.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from nextmm.errors import UserError
from nextmm.inference.conversation import GenerationSettings, Turn
from nextmm.inference.prompt import TURN_END, Message
from nextmm.modality import MODALITIES
from nextmm.serving.files import TurnFiles
from nextmm.serving.limits import Limits
from nextmm.serving.uploads import Upload, upload_from_file
from nextmm.serving.worker import TurnWorker

log = logging.getLogger(__name__)

DECODER_STEPS = "the decoder's own"
STEP_CHOICES = (1, 2, 5, 10, 25, 50, 100)
# the toyworld's media are 64 px or less: shown at a readable size, pixels kept sharp
CSS = "#chat img, #chat video { max-width: 256px; max-height: 256px; image-rendering: pixelated; }"
EXAMPLE_PROMPTS = ("surf vlog", "a picture of a snowy mountain", "what does this picture show?")


def build_page(worker: TurnWorker, files: TurnFiles, limits: Limits, model_name: str, example_image: Path) -> gr.Blocks:
    with gr.Blocks(title=f"nextmm: {model_name}", delete_cache=(3600, 3600)) as page:
        gr.Markdown(f"## nextmm · `{model_name}`\nAsk in words, attach images, sounds or clips; answers come "
                    "with pictures, sounds and videos. The HTTP API is at `/v1/chat/completions`.")
        chatbot = gr.Chatbot(label="conversation", elem_id="chat", height=760, allow_file_downloads=True)
        box = gr.MultimodalTextbox(placeholder="Type a message; attach images, sounds or clips with the clip button",
                                   show_label=False, file_count="multiple", elem_id="prompt", autofocus=True)
        with gr.Accordion("Settings", open=False):
            with gr.Row():
                seed = gr.Number(0, precision=0, minimum=0, label="seed")
                temperature = gr.Slider(0, 2, value=0, step=0.05, label="temperature (0 = greedy)")
                steps = gr.Dropdown([DECODER_STEPS] + [str(n) for n in STEP_CHOICES if n <= limits.max_inference_steps],
                                    value=DECODER_STEPS, allow_custom_value=True, label="diffusion steps")
            force = gr.CheckboxGroup(list(MODALITIES), label="always produce (none ticked: the model decides)")
        new = gr.Button("New conversation", elem_id="new-conversation")
        conversation = gr.State([])
        gr.Examples([[{"text": EXAMPLE_PROMPTS[0], "files": []}], [{"text": EXAMPLE_PROMPTS[1], "files": []}],
                     [{"text": EXAMPLE_PROMPTS[2], "files": [str(example_image)]}]], inputs=[box],
                    label="examples")

        def respond(message: dict, history: list, messages: list[Message], seed_value, temperature_value,
                    steps_value, forced: list[str], progress=gr.Progress()):
            text, uploads = (message or {}).get("text", ""), (message or {}).get("files", [])
            history = [*history, *({"role": "user", "content": {"path": _path(f)}} for f in uploads)]
            if text:
                history.append({"role": "user", "content": text})
            cleared = gr.MultimodalTextbox(value=None)
            try:
                progress(0.05, desc="checking attachments")
                user = Message("user", text, _uploads(uploads, limits))
                if not text.strip() and not user.media:
                    raise UserError("type a message or attach a medium")
                changes = {"seed": int(seed_value or 0), "temperature": float(temperature_value),
                           "num_inference_steps": _steps(steps_value),
                           "outputs": list(forced) or None}
                limits.check_settings(changes)
                settings = GenerationSettings(progress=False).updated(**changes)
                progress(0.2, desc=f"waiting for the model ({worker.pending} turns ahead)")
                yield history, messages, cleared

                def finish(turn: Turn, read: list[Message]) -> tuple:  # on the model's thread
                    written = files.write(files.new_id(), turn, prompt=text, model=model_name, seed=settings.seed)
                    return turn, written, read[-1]  # the user's message with its uploads read, for the history

                turn, written, user = worker.answer([*messages, user], settings, limits.request_timeout_s, finish)
            except UserError as error:  # the note is shown; the conversation goes on without this message
                log.info("page turn refused: %s", error)
                yield [*history, {"role": "assistant", "content": f"Cannot answer: {error}"}], messages, cleared
                return
            answer = [turn.text] + [{"path": str(path)} for _, path in written]
            assistant = Message("assistant", turn.raw_text.split(TURN_END.strip())[0].strip())
            yield [*history, {"role": "assistant", "content": answer}], [*messages, user, assistant], cleared

        box.submit(respond, [box, chatbot, conversation, seed, temperature, steps, force],
                   [chatbot, conversation, box], show_progress="full")
        new.click(lambda: ([], [], None), None, [chatbot, conversation, box], queue=False)
    return page


def _steps(value) -> int | None:
    if value in (None, DECODER_STEPS):
        return None
    if not str(value).strip().isdigit():
        raise UserError(f"diffusion steps {value!r}: give a whole number, or choose {DECODER_STEPS!r}")
    return int(value)


def _path(upload) -> str:
    return upload if isinstance(upload, str) else upload["path"]


def _uploads(uploads: list, limits: Limits) -> list[Upload]:
    if len(uploads) > limits.max_media:
        raise UserError(f"{len(uploads)} attachments, more than this server's limit of {limits.max_media} per message")
    media = []
    for upload in uploads:
        path = Path(_path(upload))
        name = upload.get("orig_name") if isinstance(upload, dict) else None
        media.append(upload_from_file(path, name or path.name, limits.max_upload_bytes))
    return media
