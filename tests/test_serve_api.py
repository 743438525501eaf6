"""The HTTP API of `nextmm serve` (nextmm.serving): a real server on a loopback port, the tiny model, the official
openai client and raw HTTP; every bad request gets a 4xx OpenAI-style error and the server goes on; 20 concurrent
clients each get their own answer."""

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from fixtures.network import free_port
from fixtures.serving import running
from openai import OpenAI
from PIL import Image

from nextmm.cli import commands
from nextmm.errors import MediaError, Stopped
from nextmm.inference.conversation import (
    GenerationSettings,
    Turn,
    generate_turn,
    to_media,
)
from nextmm.inference.outputs import write_turn
from nextmm.inference.prompt import Message, prompt_segments
from nextmm.serving.app import build_app, quiet_queue
from nextmm.serving.limits import Limits
from nextmm.serving.openai_chat import parse_request
from nextmm.serving.uploads import MediaTooLarge, upload_from_file
from nextmm.serving.worker import TurnWorker

LIMITS = Limits(max_upload_mb=0.05, max_request_mb=0.5, max_media=2, max_messages=6, max_new_tokens=16,
                request_timeout_s=60)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("served")
    with running(build_app(lambda: tiny_model, model_name="tiny", output_dir=output_dir, limits=LIMITS)) as url:
        yield url, output_dir


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("media") / "stripes.png"
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[:, ::4] = (250, 200, 40)
    Image.fromarray(pixels).save(path)
    return path


def data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def expected(model, messages: list[Message], **settings) -> Turn:
    """The same turn through the Python API, in this process."""
    return generate_turn(model, messages, GenerationSettings(progress=False).updated(**settings))


def post(url: str, body=None, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60, **kwargs)


# ------------------------------------------------------------------------------------ the openai client
def test_the_openai_client_chats_in_text(server, tiny_model):
    url, _ = server
    client = OpenAI(base_url=f"{url}/v1", api_key="not-needed")
    assert [m.id for m in client.models.list()] == ["tiny"]
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello there"}],
                                           max_tokens=8, seed=3, temperature=0.7)
    want = expected(tiny_model, [Message("user", "hello there")], max_new_tokens=8, seed=3, temperature=0.7)
    assert reply.choices[0].message.content == want.text
    assert reply.model == "tiny" and reply.id.startswith("chatcmpl-")
    prompt = tiny_model.embed_segments([prompt_segments([Message("user", "hello there")])]).inputs_embeds.shape[1]
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (prompt, want.completion_tokens)
    assert 0 < want.completion_tokens <= 8 and reply.usage.total_tokens == prompt + want.completion_tokens


def test_the_openai_client_sends_an_image(server, tiny_model, picture):
    url, _ = server
    client = OpenAI(base_url=f"{url}/v1", api_key="not-needed")
    reply = client.chat.completions.create(model="tiny", max_tokens=8, messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": data_url(picture, "image/png")}}]}])
    want = expected(tiny_model, [Message("user", "what is this?", [to_media("image", picture)])], max_new_tokens=8)
    assert reply.choices[0].message.content == want.text


# ------------------------------------------------------------------------------------------- media out
def test_media_come_back_as_urls_of_files_the_server_wrote(server, tiny_model):
    url, _ = server
    body = {"model": "tiny", "messages": [{"role": "user", "content": "a beach"}], "max_tokens": 4, "seed": 5,
            "modalities": ["text", "image", "audio", "video"]}
    reply = post(url, body)
    assert reply.status_code == 200, reply.text
    message = reply.json()["choices"][0]["message"]
    assert [m["type"] for m in message["media"]] == ["image", "audio", "video"]
    files = {m["type"]: httpx.get(m["url"]) for m in message["media"]}
    assert all(r.status_code == 200 for r in files.values())
    want = expected(tiny_model, [Message("user", "a beach")], max_new_tokens=4, seed=5,
                    outputs=["image", "audio", "video"])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(files["image"].content))), np.asarray(want.images[0]))
    samples, rate = soundfile.read(io.BytesIO(files["audio"].content))
    assert rate == want.sample_rate and len(samples) == len(want.audios[0])
    assert files["video"].headers["content-type"] == "video/mp4" and files["video"].content[4:8] == b"ftyp"
    assert base64.b64decode(message["audio"]["data"]) == files["audio"].content  # OpenAI's audio field too


def test_modalities_give_exactly_the_media_asked_for(server):
    url, _ = server
    base = {"model": "tiny", "messages": [{"role": "user", "content": "a beach"}], "max_tokens": 4}
    only_image = post(url, {**base, "modalities": ["text", "image"]}).json()["choices"][0]["message"]
    assert [m["type"] for m in only_image["media"]] == ["image"] and "audio" not in only_image
    text_only = post(url, {**base, "modalities": ["text"]}).json()
    assert text_only["choices"][0]["message"]["media"] == [] and text_only["nextmm"]["settings"]["render"] is False


def test_the_messages_are_the_conversation_with_earlier_media(server, tiny_model, picture):
    url, _ = server
    messages = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(picture, "image/png")}},
                                     {"type": "text", "text": "look"}]},
        {"role": "assistant", "content": "I see stripes."},
        {"role": "user", "content": "what colour were they?"},
    ]
    reply = post(url, {"model": "tiny", "messages": messages, "max_tokens": 8, "modalities": ["text"]})
    history = [Message("user", "look", [to_media("image", picture)]), Message("assistant", "I see stripes."),
               Message("user", "what colour were they?")]
    assert reply.json()["choices"][0]["message"]["content"] == expected(tiny_model, history, max_new_tokens=8).text
    without_picture = expected(tiny_model, [Message("user", "look"), *history[1:]], max_new_tokens=8,
                               render=False)
    assert without_picture.raw_text != expected(tiny_model, history, max_new_tokens=8, render=False).raw_text


def test_audio_and_video_parts_are_read(server, tmp_path):
    url, _ = server
    wav = tmp_path / "tone.wav"
    soundfile.write(wav, (0.3 * np.sin(np.arange(16000) / 8)).astype(np.float32), 16000)
    clip = tmp_path / "clip.gif"  # a tiny video well under the test server's upload limit
    frames = [Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)) for i in range(4)]
    frames[0].save(clip, save_all=True, append_images=frames[1:], duration=250)
    sound = base64.b64encode(wav.read_bytes()).decode()
    parts = [{"type": "input_audio", "input_audio": {"data": sound, "format": "wav"}},
             {"type": "video_url", "video_url": {"url": data_url(clip, "video/gif")}}]
    reply = post(url, {"model": "tiny", "max_tokens": 4, "modalities": ["text"],
                       "messages": [{"role": "user", "content": parts}]})
    assert reply.status_code == 200, reply.text


# ---------------------------------------------------------------------------------------- bad requests
CORRUPT_PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"not a picture" * 20).decode()
LARGE_PNG = "data:image/png;base64," + base64.b64encode(b"\0" * 60_000).decode()


def user(*parts):
    return {"model": "tiny", "messages": [{"role": "user", "content": list(parts)}]}


def image(url):
    return {"type": "image_url", "image_url": {"url": url}}


BAD_REQUESTS = {
    "a list, not an object": ([1, 2], 400, None, None),
    "no messages": ({"model": "tiny"}, 400, "messages", "missing_required_parameter"),
    "another model": ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, 404, "model",
                      "model_not_found"),
    "empty messages": ({"model": "tiny", "messages": []}, 400, "messages", None),
    "ends with the assistant": ({"model": "tiny", "messages": [{"role": "assistant", "content": "hi"}]}, 400,
                                "messages", None),
    "an unknown role": ({"model": "tiny", "messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0]", None),
    "content a number": ({"model": "tiny", "messages": [{"role": "user", "content": 7}]}, 400, "messages[0].content",
                         None),
    "an unknown part": (user({"type": "file", "file": {}}), 400, "messages[0].content[0]", None),
    "an http URL": (user(image("http://example.com/a.png")), 400, "messages[0].content[0]", "invalid_media"),
    "a file URL": (user(image("file:///etc/passwd")), 400, "messages[0].content[0]", "invalid_media"),
    "a server path": (user(image("/etc/passwd")), 400, "messages[0].content[0]", "invalid_media"),
    "a sound where a picture belongs": (user(image("data:audio/wav;base64,AAAA")), 400, None, "invalid_media"),
    "a corrupt picture": (user(image(CORRUPT_PNG)), 400, "messages[0].content[0]", "invalid_media"),
    "not base64": (user(image("data:image/png;base64,@@@@")), 400, None, "invalid_media"),
    "an unsupported picture type": (user(image("data:image/tiff;base64,AAAA")), 400, None, "invalid_media"),
    "an unsupported sound format": (user({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "aiff"}}),
                                    400, None, "invalid_media"),
    "a picture over the upload limit": (user(image(LARGE_PNG)), 413, None, "media_too_large"),
    "more media than allowed": (user(*[image(CORRUPT_PNG)] * 3), 400, "messages[0].content[2]", "too_many_media"),
    "more messages than allowed": ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}] * 7}, 400,
                                   "messages", "too_many_messages"),
    "streaming": ({**user({"type": "text", "text": "hi"}), "stream": True}, 400, "stream", "unsupported_parameter"),
    "several choices": ({**user({"type": "text", "text": "hi"}), "n": 2}, 400, "n", "unsupported_parameter"),
    "an unknown parameter": ({**user({"type": "text", "text": "hi"}), "colour": "red"}, 400, "colour",
                             "unknown_parameter"),
    "a negative temperature": ({**user({"type": "text", "text": "hi"}), "temperature": -1}, 400, "temperature",
                               "invalid_value"),
    "no tokens": ({**user({"type": "text", "text": "hi"}), "max_tokens": 0}, 400, "max_tokens", "invalid_value"),
    "more tokens than allowed": ({**user({"type": "text", "text": "hi"}), "max_tokens": 10_000}, 400, "max_tokens",
                                 "invalid_value"),
    "modalities without text": ({**user({"type": "text", "text": "hi"}), "modalities": ["image"]}, 400,
                                "modalities", "invalid_value"),
    "an unknown modality": ({**user({"type": "text", "text": "hi"}), "modalities": ["text", "smell"]}, 400,
                            "modalities", "invalid_value"),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_a_bad_request_gets_a_4xx_openai_error(server, name):
    url, _ = server
    body, status, param, code = BAD_REQUESTS[name]
    reply = post(url, body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["type"] == "invalid_request_error"
    assert (param is None or error["param"] == param) and (code is None or error["code"] == code), error


def test_system_text_goes_before_the_next_user_message_and_settings_are_named_as_openai_names_them():
    request = parse_request({"model": "tiny", "max_tokens": 9, "temperature": 0.5, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": None}, {"role": "user", "content": "again"}]}, "tiny", LIMITS)
    assert [(m.role, m.text) for m in request.messages] == [("user", "Be brief.\nhi"), ("assistant", ""),
                                                           ("user", "again")]
    assert request.settings == {"max_new_tokens": 9, "temperature": 0.5} and request.modalities is None


def test_malformed_http_gets_json_errors_and_the_server_goes_on(server):
    url, _ = server
    assert post(url, content=b"{not json").status_code == 400
    too_large = post(url, content=b"x" * int(LIMITS.max_request_bytes + 10))
    assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "request_too_large"
    wrong_method = httpx.get(f"{url}/v1/chat/completions")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    assert httpx.get(f"{url}/v1/nothing").json()["error"]["code"] == "unknown_url"
    with pytest.raises(Exception, match="model_not_found|404"):
        OpenAI(base_url=f"{url}/v1", api_key="x").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert post(url, {**user({"type": "text", "text": "still there?"}), "max_tokens": 2}).status_code == 200


def test_only_the_served_turns_files_are_reachable(server):
    url, output_dir = server
    (output_dir / "secret.txt").write_text("not for clients")
    reply = post(url, {**user({"type": "text", "text": "hi"}), "max_tokens": 2, "modalities": ["text", "image"]})
    served = reply.json()["choices"][0]["message"]["media"][0]["url"]
    turn_id = served.split("/")[-2]
    assert httpx.get(f"{url}/outputs/{turn_id}/result.json").json()["outputs"][0]["modality"] == "image"
    for path in ["/outputs/%2E%2E/secret.txt", f"/outputs/{turn_id}/..%2F..%2Fsecret.txt",
                 f"/outputs/{turn_id}/../../secret.txt", "/outputs/..%2F..%2Fsecret.txt/x",
                 f"/outputs/{turn_id}/%2Fetc%2Fpasswd", "/outputs/turns/secret.txt",
                 f"/outputs/{'0' * 24}/image_0.png", f"/outputs/{turn_id}/image_0.png.bak"]:
        reply = httpx.get(url + path)
        assert reply.status_code == 404 and "not for clients" not in reply.text, path


def test_uploads_on_the_page_are_checked_by_size_and_type(tmp_path, picture):
    with pytest.raises(MediaTooLarge, match=r"stripes\.png: the file is .* more than this server's limit"):
        upload_from_file(picture, "stripes.png", max_bytes=10)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(MediaError, match=r"notes\.txt: unsupported file type '\.txt'"):
        upload_from_file(notes, "notes.txt", max_bytes=10_000)
    corrupt = tmp_path / "upload.png"
    corrupt.write_bytes(b"garbage")
    upload = upload_from_file(corrupt, "beach.png", max_bytes=10_000)  # read on the model's thread
    with pytest.raises(MediaError, match=r"^beach\.png: cannot decode") as error:
        upload.read()
    assert str(tmp_path) not in str(error.value)  # no server path in the message


# --------------------------------------------------------------------------------- queue and timeouts
def test_the_pages_queue_polls_at_a_pace_that_leaves_the_cores_to_the_turns():
    import gradio as gr

    with gr.Blocks() as page:
        gr.Markdown("hello")
    page.queue()
    assert (page._queue.sleep_when_free, page._queue.progress_update_sleep_when_free) == (0.001, 0.01)  # Gradio's
    quiet_queue(page)
    assert (page._queue.sleep_when_free, page._queue.progress_update_sleep_when_free) == (0.02, 0.05)


def test_all_torch_work_of_a_request_runs_on_the_model_thread(tiny_model, picture, tmp_path, monkeypatch):
    """Building the model, reading uploads, the turn and writing its files: one thread, never a request's or the
    main one (torch's OpenMP team belongs to the thread that starts it; a second team slows every turn)."""
    seen: dict[str, set] = {"build": set(), "read": set(), "turn": set(), "write": set()}

    def spy(step: str, function):
        def run(*args, **kwargs):
            seen[step].add(threading.current_thread().ident)
            return function(*args, **kwargs)
        return run

    monkeypatch.setattr("nextmm.serving.uploads.to_media", spy("read", to_media))
    monkeypatch.setattr("nextmm.serving.files.write_turn", spy("write", write_turn))
    worker = TurnWorker(spy("build", lambda: tiny_model), max_queue=4, run_turn=spy("turn", generate_turn))
    with running(build_app(None, model_name="tiny", output_dir=tmp_path, limits=LIMITS, worker=worker)) as url:
        picture_part = {"type": "image_url", "image_url": {"url": data_url(picture, "image/png")}}
        reply = post(url, {"model": "tiny", "max_tokens": 4, "modalities": ["text", "image"], "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what is this?"}, picture_part]}]})
        assert reply.status_code == 200, reply.text
    model_thread = worker._executor._threads.copy().pop().ident
    assert seen == {step: {model_thread} for step in seen}
    assert model_thread != threading.main_thread().ident
    worker.close()


def test_the_worker_runs_one_turn_at_a_time_and_loses_none():
    lock, active, most, order = threading.Lock(), [0], [0], []

    def turn(model, messages, settings, stop):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.005)
        order.append(messages[-1].text)
        with lock:
            active[0] -= 1
        return Turn(text=messages[-1].text, raw_text="")

    worker = TurnWorker(lambda: None, max_queue=50, run_turn=turn)
    with ThreadPoolExecutor(8) as pool:  # submitted from many threads at once
        futures = list(pool.map(lambda i: (i, worker.submit([Message("user", str(i))], GenerationSettings())),
                                range(30)))
    assert all(future.result().text == str(i) for i, future in futures)
    assert most[0] == 1 and worker.pending == 0
    assert sorted(order, key=int) == [str(i) for i in range(30)]  # each once
    worker.close()


def test_a_full_queue_is_busy_and_a_slow_turn_times_out_and_is_stopped(tiny_model, tmp_path):
    stopped = threading.Event()

    def slow_turn(model, messages, settings, stop):
        if stop.wait(10):  # runs until the server gives up on it
            stopped.set()
            raise Stopped("stopped")
        return Turn(text=messages[-1].text, raw_text=messages[-1].text)

    limits = Limits(max_queue=1, request_timeout_s=0.5)
    worker = TurnWorker(lambda: tiny_model, max_queue=limits.max_queue, run_turn=slow_turn)
    with running(build_app(None, model_name="tiny", output_dir=tmp_path, limits=limits, worker=worker)) as url:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(post, url, user({"type": "text", "text": "first"}))
            while worker.pending == 0:
                time.sleep(0.01)
            busy = post(url, user({"type": "text", "text": "second"}))
            assert busy.status_code == 503 and busy.json()["error"]["code"] == "busy"
            timed_out = first.result()
        assert timed_out.status_code == 504 and timed_out.json()["error"]["type"] == "timeout"
        assert stopped.wait(5)  # the running turn was told to stop, not left to run its 10 s
        while worker.pending:
            time.sleep(0.01)
        worker.run_turn = lambda model, messages, settings, stop: Turn(text=messages[-1].text, raw_text="")
        limits_ok = post(url, user({"type": "text", "text": "third"}))
        assert limits_ok.status_code == 200 and limits_ok.json()["choices"][0]["message"]["content"] == "third"


def test_twenty_concurrent_clients_each_get_their_own_answer(server, tiny_model):
    url, _ = server
    before = httpx.get(f"{url}/health").json()["turns_completed"]

    def ask(i: int) -> dict:
        body = {"model": "tiny", "messages": [{"role": "user", "content": f"client {i}, seed {i}"}], "seed": i,
                "temperature": 1.0, "max_tokens": 6, "modalities": ["text", "image"] if i % 5 == 0 else ["text"]}
        reply = post(url, body)
        assert reply.status_code == 200, reply.text
        return reply.json()

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(ask, range(20)))
    assert len({r["id"] for r in replies}) == 20
    for i, reply in enumerate(replies):
        outputs = ["image"] if i % 5 == 0 else None
        want = expected(tiny_model, [Message("user", f"client {i}, seed {i}")], seed=i, temperature=1.0,
                        max_new_tokens=6, outputs=outputs, render=outputs is not None)
        message = reply["choices"][0]["message"]
        assert reply["nextmm"]["seed"] == i and message["content"] == want.text, i
        if outputs:
            served = Image.open(io.BytesIO(httpx.get(message["media"][0]["url"]).content))
            assert np.array_equal(np.asarray(served), np.asarray(want.images[0])), i
    assert len({r["choices"][0]["message"]["content"] for r in replies}) > 10  # the answers differ: a mix-up shows
    health = httpx.get(f"{url}/health").json()
    assert health["turns_completed"] - before == 20 and health["turns_pending"] == 0


# ------------------------------------------------------------------------------------------ the command
@pytest.mark.slow
def test_the_serve_command_listens_on_loopback_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "nextmm", "serve", "model=tiny", f"port={port}",
                                f"output_dir={tmp_path / 'out'}"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.5)
        assert health == {"status": "ok", "model": "tiny", "turns_pending": 0, "turns_completed": 0}
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200  # the page
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert process.returncode in (0, 130)


@pytest.mark.parametrize("setting, message", [
    ("port=0", "error: port=0: give a whole number from 1 to 65535"),
    ("limits.max_media=0", "error: limits.max_media=0: give a number above 0"),
    ("port={taken}", "error: cannot listen on 127.0.0.1:{taken}: Address already in use"),
])
def test_the_serve_command_refuses_a_bad_address_or_limit_in_one_line(setting, message, tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_:
            commands.main(["serve", "model=tiny", setting.format(taken=port), f"output_dir={tmp_path / 'out'}"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [message.format(taken=port)]
    assert not (tmp_path / "out").exists()
