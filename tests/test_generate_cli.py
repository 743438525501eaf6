import json
import subprocess
import sys

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
from PIL import Image

from nextmm import cli
from nextmm.cli.generate import main

FAST = ["model=tiny", "max_new_tokens=6", "num_inference_steps=2", "quiet=true"]


@pytest.fixture(scope="module")
def surf_vlog(tmp_path_factory):
    """The README's command, asked for every output modality, in a fresh process."""
    out = tmp_path_factory.mktemp("run") / "out"
    command = [sys.executable, "-m", "nextmm", "generate", "prompt=surf vlog", f"output_dir={out}",
               "outputs=[image,audio,video]", *FAST]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out, result


def test_result_json_lists_the_files(surf_vlog):
    out, result = surf_vlog
    data = json.loads((out / "result.json").read_text())
    assert set(data) == {"prompt", "text", "outputs", "model", "seed", "settings", "timings_s"}
    settings = data["settings"]  # every setting that shaped the turn, the decoders' resolved per modality
    assert settings["max_new_tokens"] == 6 and settings["temperature"] == 0.0 and settings["keep_claims"] is True
    assert settings["outputs"] == ["image", "audio", "video"] and settings["guidance_scale"] is None
    assert settings["decoders"]["image"]["num_inference_steps"] == 2
    assert settings["decoders"]["audio"]["guidance_scale"] == 7.5  # the tiny audio decoder sets none
    assert data["prompt"] == "surf vlog" and data["model"] == "tiny" and data["seed"] == 0
    assert [(o["modality"], o["path"]) for o in data["outputs"]] == [
        ("image", "image_0.png"), ("audio", "audio_0.wav"), ("video", "video_0.mp4")]
    assert {"load", "encode", "llm", "decode_image", "decode_audio", "decode_video", "write"} <= set(data["timings_s"])
    printed = result.stdout.strip().splitlines()
    assert printed[-1] == str(out / "result.json")
    assert result.stderr == ""  # quiet=true: the answer and the paths only, no log lines or loading bars
    assert str(out / "video_0.mp4") in printed


def test_media_files_open_in_ordinary_tools(surf_vlog):
    out, _ = surf_vlog
    with Image.open(out / "image_0.png") as image:
        assert image.format == "PNG" and image.size == (64, 64)  # nextmm/conf/decoders/tiny.yaml
    info = soundfile.info(out / "audio_0.wav")
    assert info.samplerate == 16000 and info.frames == 16000  # audio_seconds: 1.0
    frames = imageio_ffmpeg.read_frames(str(out / "video_0.mp4"))
    meta = next(frames)
    assert meta["codec"] == "h264" and meta["size"][0] % 2 == 0 and meta["size"][1] % 2 == 0
    assert meta["audio_codec"] == "aac"  # the turn's audio is the vlog's soundtrack
    assert sum(1 for _ in frames) >= 8
    assert not list(out.glob(".*")), "no temporary files left behind"


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    for name in ("broken.png", "broken.wav", "broken.mp4"):
        (folder / name).write_bytes(np.random.default_rng(0).bytes(2000))
    (folder / "notes.txt").write_text("not media")
    Image.new("RGB", (8, 8)).save(folder / "fine.png")
    return folder


@pytest.mark.parametrize(
    "override, message",
    [
        ("image={dir}/missing.png", "not found"),
        ("image={dir}/broken.png", "broken.png"),
        ("audio={dir}/broken.wav", "broken.wav"),
        ("video={dir}/broken.mp4", "broken.mp4"),
        ("image={dir}/notes.txt", "notes.txt"),
        ("prompt=", "empty prompt"),
        ("prompt=" + "long " * 600, "longer than the model's context"),
        ("bogus_key=1", "bad override"),
        ("model=nope", "unknown model config"),
        ("dtype=float8", "unknown dtype"),
        ("keep_claims=maybe", "keep_claims=maybe: give true or false"),
        ("guidance_scale=-1", "guidance_scale=-1: give 0 or more"),
        ("top_p=0", "top_p=0: give a number in (0, 1]"),
        ("seed=abc", "seed=abc: give a whole number"),
        ("seed=-1", "seed=-1: give a whole number"),
        ("height=7", "height=7: the image decoder needs a multiple of 2 pixels"),
        ("audio_seconds=1e9", "give seconds above 0, up to 600"),
        ("outputs=[smell]", "outputs has 'smell'"),
        ("device=tpu9", "device=tpu9: give auto, cpu, cuda"),
        ("memory=maybe", "memory=maybe: give auto, resident, offload, sequential"),
        ("memory_limit=lots", "memory_limit=lots: give a size such as 12 (GiB), 12GiB or 800MiB"),
        ("guidance_scale=nan", "guidance_scale=nan: give 0 or more"),
    ],
    ids=["missing", "corrupt-image", "corrupt-audio", "corrupt-video", "extension", "empty", "too-long",
         "unknown-override", "unknown-model", "bad-dtype", "bad-keep-claims", "negative-guidance", "zero-top-p", "word-seed", "negative-seed", "odd-height", "huge-audio", "unknown-output",
         "unknown-device", "bad-memory", "bad-memory-limit", "nan-guidance"],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(bad_files, tmp_path, capsys, override, message):
    out = tmp_path / "out"
    argv = ["prompt=hello", override.format(dir=bad_files), f"output_dir={out}", *FAST]
    with pytest.raises(SystemExit) as exit_:
        cli.run("generate", main, argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_bad_input_from_a_fresh_process_has_no_traceback(bad_files, tmp_path):
    command = [sys.executable, "-m", "nextmm", "generate", "prompt=hi", f"image={bad_files}/broken.png",
               f"output_dir={tmp_path / 'out'}", *FAST]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "broken.png" in lines[0], result.stderr


PEOPLES_PROMPTS = [
    "what's this?", "surf, sand, sun", "make it [bigger] please", "a=b and c=d", 'she said "hi"', "ünïcödé café",
    "surf vlog 🌊🏄", "${oc.env:HOME}", "a \\${x} and \\\\${y}", "42", "[a,b]", "-1", "null", "true", "50% off?",
    "multi\nline", "  spaces around  ", "~tilde +plus @at #hash", "",
]


@pytest.mark.parametrize("prompt", PEOPLES_PROMPTS)
def test_a_prompt_is_taken_verbatim_whatever_characters_it_holds(prompt):
    """Never parsed by Hydra's override grammar, never interpolated, never turned into a number or a list."""
    cfg = cli.compose_config("generate", [f"prompt={prompt}", "model=tiny"])
    assert cfg.prompt == prompt and isinstance(cfg.prompt, str)


def test_media_paths_with_any_characters_reach_the_turn(tmp_path):
    folder = tmp_path / "my photos, [2024] = best ${x}"
    folder.mkdir()
    picture = folder / "beach day, 1 🌊.png"
    Image.new("RGB", (8, 8), (200, 180, 40)).save(picture)
    out = tmp_path / "out"
    prompt = "what's in this picture, [really]? ${oc.env:HOME}"
    command = [sys.executable, "-m", "nextmm", "generate", f"prompt={prompt}", f"image={picture}",
               f"output_dir={out}", *FAST]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "result.json").read_text())["prompt"] == prompt
    # a list of paths keeps Hydra's list syntax, in which a name with spaces or commas is quoted
    cfg = cli.compose_config("generate", [f"image=['{picture.name}',b.png]", "model=tiny"])
    assert list(cfg.image) == [picture.name, "b.png"]


def test_a_prompt_over_the_context_fails_before_the_model_loads(tmp_path):
    """Not quiet, yet one line: no loading bars or INFO lines of a model that was never needed."""
    command = [sys.executable, "-m", "nextmm", "generate", "prompt=" + "long " * 600, f"output_dir={tmp_path / 'o'}"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["error: the prompt is 602 tokens, longer than the model's context of 512: "
                                        "shorten it"]


# ------------------------------------------------------------------------------------ a file of prompts
def test_a_prompts_file_gets_a_folder_per_prompt_with_the_turns_of_single_runs(tmp_path, capsys, tiny_model):
    prompts = ["surf vlog", "a picture of a beach", 'what is "this", [a,b] = ${x}?']
    listing = tmp_path / "requests.txt"
    listing.write_text("\n".join([prompts[0], "", prompts[1], "   ", prompts[2]]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as done:
        cli.run("generate", main, [f"prompts={listing}", "batch_size=2", f"output_dir={out}", "outputs=[image]", *FAST])
    assert done.value.code == 0
    printed = capsys.readouterr().out.splitlines()
    assert sorted(p.name for p in out.iterdir()) == ["0001", "0002", "0003"]
    for number, prompt in enumerate(prompts, start=1):
        result = json.loads((out / f"{number:04d}" / "result.json").read_text())
        alone = tiny_model.chat(prompt, outputs=["image"], max_new_tokens=6, num_inference_steps=2, progress=False)
        assert result["prompt"] == prompt and result["text"] == alone.text  # a batch answers as single turns do
        with Image.open(out / f"{number:04d}" / "image_0.png") as image:
            np.testing.assert_allclose(np.asarray(image, float), np.asarray(alone.images[0], float), atol=2)
        assert f"[{number:04d}] {alone.text}" in printed and str(out / f"{number:04d}" / "image_0.png") in printed


@pytest.mark.parametrize("overrides, message", [
    (["prompts={dir}/missing.txt"], "prompts={dir}/missing.txt: no such file"),
    (["prompts={dir}"], "is a folder"),
    (["prompts={dir}/latin1.txt"], "is not UTF-8 text"),
    (["prompts={dir}/blank.txt"], "holds no prompt"),
    (["prompts={dir}/ok.txt", "prompt=hello"], "without prompt="),
    (["prompts={dir}/ok.txt", "batch_size=0"], "batch_size=0: give a whole number >= 1"),
    (["prompts={dir}/ok.txt", "batch_size=two"], "batch_size=two: give a whole number >= 1"),
], ids=["missing", "folder", "not-utf8", "blank", "with-prompt", "zero-batch", "word-batch"])
def test_a_bad_prompts_file_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, overrides, message):
    (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    (tmp_path / "blank.txt").write_text("\n  \n")
    (tmp_path / "ok.txt").write_text("surf vlog\n")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        cli.run("generate", main, [*(o.format(dir=tmp_path) for o in overrides), f"output_dir={out}", *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and message.format(dir=tmp_path) in err[0], err
    assert not out.exists()


def test_the_nextgpt_demo_preset_gives_the_original_sampling():
    """preset=nextgpt_demo: NExT-GPT-Lagacy/code/inference.py's temperature 0.4, top_p 1.0, 150 new tokens, 9 s of
    audio, float16 where CUDA is; without it nextmm decodes greedily. A key on the command line still wins."""
    from nextmm.cli.generate import turn_settings
    from nextmm.cli.overrides import compose_config

    cfg = compose_config("generate", ["preset=nextgpt_demo", "model=nextgpt_7b"])
    assert (cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.audio_seconds, cfg.dtype) == (0.4, 1.0, 150, 9, "auto")
    assert turn_settings(cfg)["temperature"] == 0.4
    assert compose_config("generate", []).temperature == 0.0
    assert compose_config("generate", ["preset=nextgpt_demo", "temperature=0.7"]).temperature == 0.7
    assert compose_config("chat", ["preset=nextgpt_demo"]).max_new_tokens == 150


def test_a_gpu_out_of_memory_is_one_line_naming_memory_auto(tmp_path, capsys, monkeypatch):
    """torch's out-of-memory error mid-turn: one line with the setting that fits, exit 1, no folder left."""
    import torch

    def too_big(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
                                          "capacity of 11.6 GiB of which 1.2 GiB is free.")

    monkeypatch.setattr("nextmm.inference.conversation.generate_turns", too_big)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        cli.run("generate", main, ["prompt=surf vlog", f"output_dir={out}", *FAST])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the GPU ran out of memory (CUDA out of memory): nothing half-written is left. To answer, "
                   "set memory=auto (or memory=offload, model.llm.quantize=nf4; README \"Memory\"); to train, a "
                   "smaller train.batch_size or a sharded accelerate config (docs/training.md)"]
    assert not out.exists()
