"""A corpus of bad inputs and faults, each run in a process of its own: every one must end cleanly.

Clean: exactly one line on stderr (``error: ...`` for a user error), exit code 2 for a user error (130 for Ctrl-C,
1 for a full disk), no traceback, and nothing half-written: the case's working folder holds afterwards exactly
what it held before (no output folder, no hidden temporary, no lock file). Chat cases end with code 0: the bad
turn is one line and the session goes on. Python API cases must raise a nextmm UserError with a one-line message.

Each case runs in a child forked from tests/fixtures/fault_runner.py, which has imported nextmm's commands once,
so the corpus takes seconds rather than the minutes of a fresh interpreter per case.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TURN = ["model=tiny", "max_new_tokens=4", "num_inference_steps=1", "quiet=true"]


@dataclass
class Case:
    id: str
    argv: list[str]
    message: str = ""  # what the one stderr line must hold
    code: int = 2
    stdin: str = ""
    api: str | None = None  # Python API calls instead of a command line
    setup: str | None = None  # what the working folder holds before: see prepare()
    needs: str | None = None  # "readonly": a read-only filesystem at {readonly}


def gen(*argv) -> list:
    """A generate command line that would run a tiny turn into o/, with ``argv`` added (the last value wins)."""
    return ["generate", "prompt=hi", *TURN, "output_dir=o", *argv]


def api(code: str) -> str:
    return "from nextmm import NextMM\nmodel = NextMM.from_config('tiny')\n" + code


CASES = [
    # generate: values of every key
    *[Case(f"generate-{setting}", gen(setting), message) for setting, message in [
        ("seed=abc", "seed=abc: give a whole number"),
        ("seed=1.5", "seed=1.5: give a whole number"),
        ("seed=-1", "seed=-1: give a whole number"),
        ("seed=true", "seed=True: give a whole number"),
        ("seed=[1,2]", "seed=[1, 2]: give a whole number"),
        ("seed=99999999999", "seed=99999999999: give a whole number"),
        ("height=7", "height=7: the image decoder needs a multiple of 2 pixels"),
        ("width=-64", "width=-64: give a whole number of pixels"),
        ("height=0", "height=0: give a whole number of pixels"),
        ("height=100000", "height=100000: give a whole number of pixels up to 4096"),
        ("width=abc", "width=abc: give a whole number of pixels"),
        ("num_frames=0", "num_frames=0: give a whole number of frames"),
        ("num_frames=1e9", "num_frames=1000000000.0: give a whole number of frames"),
        ("audio_seconds=0", "audio_seconds=0: give seconds above 0"),
        ("audio_seconds=1e9", "give seconds above 0, up to 600"),
        ("audio_seconds=nan", "audio_seconds=nan: give seconds above 0"),
        ("audio_seconds=-1", "audio_seconds=-1: give seconds above 0"),
        ("max_new_tokens=0", "max_new_tokens=0: give a whole number of tokens >= 1"),
        ("max_new_tokens=-5", "max_new_tokens=-5: give a whole number of tokens"),
        ("max_new_tokens=abc", "max_new_tokens=abc: give a whole number of tokens"),
        ("temperature=-1", "temperature=-1: give 0 (greedy) or more"),
        ("temperature=nan", "temperature=nan: give 0 (greedy) or more"),
        ("temperature=inf", "temperature=inf: give 0 (greedy) or more"),
        ("temperature=abc", "temperature=abc: give 0 (greedy) or more"),
        ("top_p=2", "top_p=2: give a number in (0, 1]"),
        ("top_p=0", "top_p=0: give a number in (0, 1]"),
        ("top_p=nan", "top_p=nan: give a number in (0, 1]"),
        ("num_inference_steps=0", "num_inference_steps=0: give a whole number of denoising steps"),
        ("num_inference_steps=1.5", "num_inference_steps=1.5: give a whole number of denoising steps"),
        ("num_inference_steps=100000", "num_inference_steps=100000: give a whole number of denoising steps"),
        ("guidance_scale=nan", "guidance_scale=nan: give 0 or more"),
        ("guidance_scale=-1", "guidance_scale=-1: give 0 or more"),
        ("guidance_scale=inf", "guidance_scale=inf: give 0 or more"),
        ("outputs=[smell]", "outputs has 'smell'"),
        ("outputs=42", "outputs has '42'"),
        ("outputs={{a:1}}", "outputs"),
        ("device=tpu9", "device=tpu9: give auto, cpu, cuda"),
        ("device=cuda:7", "device=cuda:7"),
        ("device=42", "device=42: give auto, cpu, cuda"),
        ("dtype=float8", "unknown dtype 'float8'"),
        ("dtype=42", "unknown dtype 42"),
        ("quiet=maybe", "quiet=maybe: give true or false"),
        ("quiet=2", "quiet=2: give true or false"),
        ("overwrite=yes", "overwrite=yes: give true or false"),
        ("memory=1", "memory=1: give auto, resident, offload, sequential"),
        ("memory_limit=-3", "memory_limit=-3: give a size such as 12 (GiB)"),
        ("memory_limit=12", "memory_limit=12 is the budget of memory=auto"),
        ("keep_claims=0", "keep_claims=0: give true or false"),
        ("bogus=1", "bad override"),
        ("+bogus=1", "bad override"),
        ("prompt", "bad override"),
        ("~seed", "seed"),
        ("model=nope", "unknown model config 'nope'"),
        ("model=", "unknown model config ''"),
        ("model.llm.hidden_size=-1", "hidden_size"),
        ("prompt=", "empty prompt"),
        ("prompt=" + "long " * 600, "longer than the model's context"),
    ]],
    # generate: files that are folders, empty, corrupt, huge headers, unsupported, missing
    *[Case(f"generate-{name}", gen(setting), message) for name, setting, message in [
        ("image-missing", "image={data}/missing.png", "image file not found"),
        ("image-folder", "image={data}/folder.png", "folder.png is a folder, not a file"),
        ("image-the-data-folder", "image={data}", "is a folder, not a file"),
        ("image-empty", "image={data}/empty.png", "empty.png"),
        ("image-corrupt", "image={data}/broken.png", "broken.png"),
        ("image-huge-header", "image={data}/huge.png", "huge.png"),
        ("image-12000x1", "image={data}/long.png", "longer than"),
        ("image-text-file", "image={data}/notes.txt", "notes.txt"),
        ("image-list-one-missing", "image=[{data}/fine.png,{data}/missing.png]", "missing.png"),
        ("image-odd-name-missing", "image={data}/my photos, [1] = ${{x}}/beach 🌊.png", "beach 🌊.png"),
        ("audio-empty", "audio={data}/empty.wav", "empty.wav"),
        ("audio-corrupt", "audio={data}/broken.wav", "broken.wav"),
        ("audio-nan", "audio={data}/nan.wav", "NaN"),
        ("audio-inf", "audio={data}/inf.wav", "NaN or infinite"),
                ("audio-folder", "audio={data}/folder.wav", "is a folder, not a file"),
        ("video-corrupt", "video={data}/broken.mp4", "broken.mp4"),
        ("video-empty", "video={data}/empty.mp4", "empty.mp4"),
        ("video-sound-only", "video={data}/sound.mp4", "sound but no pictures"),
        ("video-an-image", "video={data}/fine.png", "fine.png"),
    ]],
    # a WAV header that claims 4 GB of samples: libsndfile reads the samples the file holds, a normal turn
    Case("generate-audio-huge-header", gen("audio={data}/huge.wav"), code=0),
    # generate: output folders
    Case("generate-output-dir-a-file", gen("output_dir={data}/notes.txt"), "is a file: give a folder"),
    Case("generate-output-dir-under-a-file", gen("output_dir=notes.txt/out"), "notes.txt", setup="notes"),
    Case("generate-output-dir-holds-files", gen(), "already holds files", setup="full_output"),
    Case("generate-output-dir-read-only", gen("output_dir={readonly}/out"), "output_dir", needs="readonly"),
    Case("generate-output-dir-empty-string", gen("output_dir="), "output_dir"),
    # chat: a bad turn is one line and the session goes on (code 0); bad settings end it before it starts
    Case("chat-corrupt-attachment", ["chat", *TURN, "output_dir=o"], "broken.png", code=0,
         stdin="/image {data}/broken.png\nhi\n/quit\n"),
    Case("chat-nan-sound", ["chat", *TURN, "output_dir=o"], "NaN", code=0, stdin="/audio {data}/nan.wav\nhi\n"),
    Case("chat-folder-attachment", ["chat", *TURN, "output_dir=o"], "is a folder", code=0,
         stdin="/video {data}/folder.png\nhi\n"),
    Case("chat-too-long", ["chat", *TURN, "output_dir=o"], "longer than the model's context", code=0,
         stdin="long " * 600 + "\n"),
    Case("chat-bad-seed", ["chat", *TURN, "output_dir=o", "seed=abc"], "seed=abc: give a whole number"),
    Case("chat-output-dir-a-file", ["chat", *TURN, "output_dir={data}/notes.txt"], "is a file"),
    Case("chat-output-dir-holds-files", ["chat", *TURN, "output_dir=o"], "already holds files", setup="full_output"),
    # convert
    Case("convert-missing-source", ["convert", "model=tiny", "source=missing", "output=out"], "missing"),
    Case("convert-source-a-file", ["convert", "model=tiny", "source={data}/notes.txt", "output=out"], "notes.txt"),
    Case("convert-source-empty-folder", ["convert", "model=tiny", "source={data}/emptydir", "output=out"],
         "emptydir"),
    Case("convert-corrupt-release", ["convert", "model=tiny", "source={data}/release", "output=out"],
         "pytorch_model.pt"),
    Case("convert-release-without-tokenizer", ["convert", "model=tiny", "source={data}/no_tokenizer", "output=out"],
         "lacks tokenizer.model"),
    Case("convert-output-exists", ["convert", "model=tiny", "source={data}/release", "output={data}/notes.txt"],
         "already exists"),
    Case("convert-bad-overwrite", ["convert", "model=tiny", "source={data}/release", "output=out", "overwrite=maybe"],
         "overwrite=maybe: give true or false"),
    # precompute
    Case("precompute-no-output", ["precompute"], "output"),
    Case("precompute-bad-kind", ["precompute", "kind=bogus", "output=out"], "kind='bogus'"),
    Case("precompute-missing-data", ["precompute", "output=out", "data.root=missing"], "missing"),
    Case("precompute-zero-batch", ["precompute", "output=out", "batch_size=0", "data.root={data}/pairs"],
         "batch_size=0"),
    Case("precompute-zero-shard", ["precompute", "output=out", "shard_size=0", "data.root={data}/pairs"],
         "shard_size=0"),
    Case("precompute-bad-device", ["precompute", "output=out", "device=tpu9", "data.root={data}/pairs"],
         "device=tpu9"),
    Case("precompute-negative-workers", ["precompute", "output=out", "num_workers=-1"], "num_workers=-1"),
    Case("precompute-output-a-file", ["precompute", "output={data}/notes.txt", "data.root={data}/pairs"],
         "notes.txt"),
    # eval
    Case("eval-negative-limit", ["eval", "model=tiny", "limit=-1"], "limit=-1"),
    Case("eval-word-limit", ["eval", "model=tiny", "limit=abc"], "limit=abc"),
    Case("eval-bad-section", ["eval", "model=tiny", "sections=[bogus]"], "bogus"),
    Case("eval-missing-data-root", ["eval", "model=tiny", "data_root=missing"], "missing"),
    Case("eval-missing-people-file", ["eval", "model=tiny", "people_file=missing.jsonl", "sections=[people]"],
         "missing.jsonl"),
    Case("eval-zero-threads", ["eval", "model=tiny", "threads=0"], "threads=0"),
    Case("eval-zero-tokens", ["eval", "model=tiny", "max_new_tokens=0"], "max_new_tokens"),
    Case("eval-output-a-folder", ["eval", "model=tiny", "output={data}/emptydir"], "emptydir"),
    Case("eval-zero-batch", ["eval", "model=tiny", "batch_size=0"], "batch_size=0"),
    # train
    Case("train-unknown-recipe", ["train", "nope"], "unknown recipe 'nope'"),
    # without output_dir a run gets Hydra's new folder (outputs/<date>/...), which goes again when the run fails
    Case("train-default-folder-no-data", ["train", "encoder_side"], "annotation file not found"),
    Case("train-output-dir-a-file", ["train", "encoder_side", "output_dir={data}/notes.txt"], "is a file"),
    Case("train-zero-batch", ["train", "encoder_side", "output_dir=run", "train.batch_size=0"], "batch_size=0"),
    Case("train-negative-steps", ["train", "encoder_side", "output_dir=run", "train.max_steps=-1"], "max_steps=-1"),
    Case("train-nan-lr", ["train", "encoder_side", "output_dir=run", "optimizer.lr=nan"], "lr=nan"),
    Case("train-fp8", ["train", "encoder_side", "output_dir=run", "train.mixed_precision=fp8"], "fp8"),
    Case("train-bad-resume", ["train", "encoder_side", "output_dir=run", "resume=maybe"], "resume=maybe"),
    Case("train-missing-data", ["train", "encoder_side", "output_dir=run", "data.root=missing"], "missing"),
    Case("train-missing-init", ["train", "decoder_side", "output_dir=run", "init_from=missing"], "missing"),
    Case("train-bad-schedule", ["train", "modality_switching", "output_dir=run", "optimizer.schedule=bogus"],
         "bogus"),
    Case("train-zero-checkpoint-every", ["train", "encoder_side", "output_dir=run", "checkpoint.every=0"],
         "every=0"),
    Case("train-missing-features", ["train", "encoder_side", "output_dir=run", "features=missing"], "missing"),
    Case("train-word-batch", ["train", "pretrain_llm", "output_dir=run", "data_root={data}/emptydir",
                                "train.batch_size=abc"], "batch_size=abc"),
    # inspect, world, download, serve, the command itself
    Case("inspect-unknown-model", ["inspect", "model=nope"], "unknown model config"),
    Case("inspect-garbage-checkpoint", ["inspect", "model={data}/garbage_ckpt"], "config.yaml"),
    Case("inspect-list-checkpoint", ["inspect", "model={data}/list_ckpt"], "config.yaml"),
    Case("inspect-empty-checkpoint", ["inspect", "model={data}/empty_ckpt"], "config.yaml"),
    Case("inspect-bogus-key", ["inspect", "bogus=1"], "bad override"),
    Case("world-no-output", ["world"], "output"),
    Case("world-negative-samples", ["world", "output=w", "samples=-1"], "samples=-1"),
    Case("world-bad-concept", ["world", "output=w", "concepts=[bogus]"], "bogus"),
    Case("world-odd-size", ["world", "output=w", "render.size=7"], "render: size must be even"),
    Case("world-output-a-file", ["world", "output={data}/notes.txt"], "notes.txt"),
    Case("download-bad-part", ["download", "parts=[bogus]", "dest=d"], "bogus"),
    Case("serve-port-too-big", ["serve", "model=tiny", "port=70000"], "port=70000"),
    Case("serve-word-port", ["serve", "model=tiny", "port=abc"], "port=abc"),
    Case("serve-bad-host", ["serve", "model=tiny", "host=999.1.1.1", "port=65431"], "999.1.1.1"),
    Case("serve-zero-upload", ["serve", "model=tiny", "limits.max_upload_mb=0"], "max_upload_mb=0"),
    Case("serve-unknown-limit", ["serve", "model=tiny", "limits.bogus=1"], "bogus"),
    Case("unknown-command", ["frobnicate"], "unknown command 'frobnicate'"),
    # the Python API
    Case("api-unknown-model", [], "unknown model config 'nope'", api="from nextmm import NextMM\n"
         "NextMM.from_config('nope')"),
    Case("api-model-a-number", [], "42", api="from nextmm import NextMM\nNextMM.from_config(42)"),
    Case("api-bad-device", [], "device", api="from nextmm import NextMM\nNextMM.from_config('tiny', device='tpu9')"),
    Case("api-bad-dtype", [], "float8", api="from nextmm import NextMM\nNextMM.from_config('tiny', dtype='float8')"),
    Case("api-prompt-a-number", [], "prompt", api=api("model.chat(42)")),
    Case("api-image-a-number", [], "image input of type int", api=api("model.chat('hi', images=[42])")),
    Case("api-missing-image", [], "not found", api=api("model.chat('hi', images='{data}/missing.png')")),
    Case("api-outputs-a-string", [], "outputs='image'", api=api("model.chat('hi', outputs='image')")),
    Case("api-negative-seed", [], "seed=-1", api=api("model.chat('hi', seed=-1)")),
    Case("api-nan-temperature", [], "temperature=nan", api=api("model.chat('hi', temperature=float('nan'))")),
    Case("api-empty-image", [], "0 x 0", api=api("from PIL import Image\n"
                                                 "model.chat('hi', images=[Image.new('RGB', (0, 0))])")),
    Case("api-nan-audio", [], "NaN", api=api("import numpy as np\n"
                                             "model.chat('hi', audios=[(np.full(16000, np.nan, 'float32'), 16000)])")),
    Case("api-zero-sample-rate", [], "sample_rate=0", api=api("import numpy as np\n"
                                                       "model.chat('hi', audios=[(np.zeros(100, 'float32'), 0)])")),
    Case("api-no-frames", [], "frames", api=api("import numpy as np\n"
                                                "model.chat('hi', videos=[(np.zeros((0, 8, 8, 3), 'uint8'), 8)])")),
    Case("api-zero-fps", [], "fps", api=api("import numpy as np\n"
                                            "model.chat('hi', videos=[(np.zeros((4, 8, 8, 3), 'uint8'), 0)])")),
    Case("api-bad-conversation", [], "top_p=2", api=api("model.conversation(top_p=2)")),
    Case("api-empty-prompt", [], "empty prompt", api=api("model.chat('   ')")),
]


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The corpus's bad (and a few good) files, read-only to the cases."""
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for name in ("broken.png", "broken.wav", "broken.mp4"):
        (folder / name).write_bytes(rng.bytes(2000))
    for name in ("empty.png", "empty.wav", "empty.mp4"):
        (folder / name).write_bytes(b"")
    for name in ("folder.png", "folder.wav", "emptydir", "my photos, [1] = ${x}"):
        (folder / name).mkdir()
    (folder / "notes.txt").write_text("not media")
    Image.new("RGB", (8, 8), (200, 180, 40)).save(folder / "fine.png")
    Image.new("RGB", (12000, 1)).save(folder / "long.png")
    (folder / "huge.png").write_bytes(png_header(100_000, 100_000))
    soundfile.write(folder / "nan.wav", np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT")
    soundfile.write(folder / "inf.wav", np.full(1600, np.inf, np.float32), 16000, subtype="FLOAT")
    # a WAV header that claims 4 GB of samples, over 2 seconds of them
    soundfile.write(folder / "huge.wav", np.zeros(32000, np.float32), 16000, subtype="PCM_16")
    wav = bytearray((folder / "huge.wav").read_bytes())
    wav[40:44] = struct.pack("<I", 0xFFFFFFF0)
    (folder / "huge.wav").write_bytes(bytes(wav))
    soundfile.write(folder / "tone.wav", 0.1 * np.sin(np.arange(16000) / 8).astype(np.float32), 16000)
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(folder / "tone.wav"),
                    "-c:a", "aac", str(folder / "sound.mp4")], check=True)
    release = folder / "release"  # the release's tokenizer files and a corrupt checkpoint
    shutil.copytree(REPO / "tests" / "fixtures" / "release_tokenizer", release)
    (release / "pytorch_model.pt").write_bytes(rng.bytes(1000))
    (folder / "no_tokenizer").mkdir()
    (folder / "no_tokenizer" / "pytorch_model.pt").write_bytes(rng.bytes(1000))
    for name, text in (("garbage_ckpt", "{{{ not: yaml: [\n"), ("list_ckpt", "- a\n- b\n"), ("empty_ckpt", "")):
        (folder / name).mkdir()
        (folder / name / "config.yaml").write_text(text)
    (folder / "pairs").mkdir()
    return folder


@pytest.fixture(scope="module")
def readonly(tmp_path_factory):
    """A read-only filesystem (root ignores file modes): a tmpfs mounted ro, where the machine allows it."""
    folder = tmp_path_factory.mktemp("readonly")
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True,
                              text=True)
    except FileNotFoundError:
        done = None
    if done is None or done.returncode != 0:
        yield None
        return
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture(scope="module")
def runner():
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path}  # this checkout's nextmm, whatever is installed
    process = subprocess.Popen([sys.executable, str(REPO / "tests" / "fixtures" / "fault_runner.py")], cwd=REPO,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert json.loads(process.stdout.readline()) == {"ready": True}

    def run(case: dict) -> dict:
        process.stdin.write(json.dumps(case) + "\n")
        process.stdin.flush()
        return json.loads(process.stdout.readline())

    yield run
    process.stdin.close()
    process.wait(timeout=60)


def prepare(scratch: Path, setup: str | None) -> None:
    if setup == "notes":
        (scratch / "notes.txt").write_text("keep me")
    elif setup == "full_output":
        (scratch / "o").mkdir()
        (scratch / "o" / "image_0.png").write_bytes(b"an earlier turn's picture")


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


@pytest.mark.slow  # about 160 processes: a few minutes on two cores
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_every_bad_input_ends_cleanly(case, data, readonly, runner, tmp_path):
    if case.needs == "readonly" and readonly is None:
        pytest.skip("mounting a read-only tmpfs is not permitted here")
    places = {"data": data, "readonly": readonly}
    scratch = tmp_path / "work"
    scratch.mkdir()
    prepare(scratch, case.setup)
    before = snapshot(scratch)
    stdin, stdout, stderr = tmp_path / "stdin", tmp_path / "stdout", tmp_path / "stderr"
    stdin.write_text(case.stdin.format(**places), encoding="utf-8")
    result = runner({"argv": [arg.format(**places) for arg in case.argv], "cwd": str(scratch), "stdin": str(stdin),
                     "stdout": str(stdout), "stderr": str(stderr),
                     "api": case.api.format(**places) if case.api is not None else None})
    err = stderr.read_text(encoding="utf-8", errors="replace")
    lines = [line for line in err.splitlines() if line.strip()]
    assert not result["timed_out"], "still running after the runner's timeout: the check is not before the work"
    assert "Traceback" not in err, err[-3000:]
    assert result["code"] == case.code, err[-3000:]
    if case.api is not None:  # the API's contract is the exception; building a model prints libraries' notices
        lines = lines[-1:]
    if case.code == 0 and not case.message:  # accepted: quiet=true prints nothing on stderr
        assert lines == [], err[-3000:]
    else:
        assert len(lines) == 1, err[-3000:]
        assert lines[0].startswith("error: ") and case.message.format(**places) in lines[0], lines[0]
    after = snapshot(scratch)
    if case.code == 0:  # a chat session goes on: whatever it wrote, nothing hidden is left
        assert not [name for name in after if any(part.startswith(".") for part in Path(name).parts)], after
    else:
        assert after == before, sorted(set(after) ^ set(before))


QUICK = ["generate-+bogus=1", "generate-~seed", "generate-output-dir-empty-string", "eval-zero-threads",
         "eval-output-a-folder", "precompute-zero-batch", "precompute-bad-device", "train-fp8", "train-bad-schedule",
         "train-missing-init", "inspect-garbage-checkpoint", "inspect-empty-checkpoint", "world-output-a-file"]


@pytest.mark.parametrize("case", [c for c in CASES if c.id in QUICK], ids=[c.id for c in CASES if c.id in QUICK])
def test_settings_are_refused_before_any_work(case, data, tmp_path, capsys, monkeypatch):
    """A few of the corpus's cases in this process, for a quick signal: each fails at its check, in a second."""
    from nextmm.cli.commands import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([arg.format(data=data) for arg in case.argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and case.message in err, err
    assert list(tmp_path.iterdir()) == []
