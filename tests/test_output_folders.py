"""A turn's folder is a transaction: one turn or nothing, never two turns mixed, never a half-written file."""

import errno
import json
import os

import pytest
import soundfile

from nextmm import cli
from nextmm.cli.generate import main
from nextmm.inference import outputs
from nextmm.inference.outputs import claimed_folder

FAST = ["model=tiny", "max_new_tokens=4", "num_inference_steps=1", "quiet=true", "outputs=[image,audio]"]


def generate(capsys, *argv):
    with pytest.raises(SystemExit) as exit_:
        cli.run("generate", main, ["prompt=surf vlog", *FAST, *argv])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def leftovers(folder):
    """Hidden files or folders (staging, locks) left beside or inside ``folder``."""
    return sorted(p.name for p in folder.rglob(".*"))


def test_an_output_dir_that_holds_files_is_refused_and_left_as_it_was(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "image_0.png").write_bytes(b"someone else's picture")
    code, _, err = generate(capsys, f"output_dir={out}")
    assert code == 2 and err.count("\n") == 1
    assert "already holds files" in err and "overwrite=true" in err
    assert sorted(p.name for p in out.iterdir()) == ["image_0.png"]
    assert (out / "image_0.png").read_bytes() == b"someone else's picture"


def test_overwrite_replaces_the_folder_whole(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "video_0.mp4").write_bytes(b"an earlier turn's video")
    code, _, _ = generate(capsys, f"output_dir={out}", "overwrite=true")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["audio_0.wav", "image_0.png", "result.json"]
    assert leftovers(tmp_path) == []


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(tmp_path, capsys):
    out = tmp_path / "out"
    with claimed_folder(out, overwrite=False):  # another run, in the middle of its turn
        code, _, err = generate(capsys, f"output_dir={out}")
    assert code == 2 and "being written by another run" in err
    assert not out.exists() or not any(out.iterdir())
    assert leftovers(tmp_path) == []  # the first run's lock file went with it


def test_default_folders_are_new_for_each_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = []
    for _ in range(2):  # within the same second
        code, out, _ = generate(capsys)
        assert code == 0
        results.append(out.strip().splitlines()[-1])
    assert results[0] != results[1]
    assert all(json.loads((tmp_path / r).read_text())["prompt"] == "surf vlog" for r in results)


def test_ctrl_c_while_writing_leaves_nothing_and_says_so(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs.soundfile, "write", interrupted)
    out = tmp_path / "out"
    code, _, err = generate(capsys, f"output_dir={out}")
    assert code == 130
    assert err.strip().splitlines() == [err.strip()] and err.startswith("interrupted")
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_full_disk_leaves_nothing_and_is_one_line(tmp_path, capsys, monkeypatch):
    real_write = soundfile.write

    def full(path, *args, **kwargs):
        real_write(path, *args, **kwargs)  # the image and part of the audio made it to disk
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(outputs.soundfile, "write", full)
    out = tmp_path / "out"
    code, _, err = generate(capsys, f"output_dir={out}")
    assert code == 1 and err.count("\n") == 1 and "no space left" in err
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("setting, message", [
    ("overwrite=maybe", "overwrite=maybe: give true or false"),
])
def test_bad_flags_are_one_line(tmp_path, capsys, setting, message):
    code, _, err = generate(capsys, f"output_dir={tmp_path / 'out'}", setting)
    assert code == 2 and message in err


def test_an_output_dir_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    code, _, err = generate(capsys, f"output_dir={target}")
    assert code == 2 and "is a file" in err
    assert target.read_text() == "keep me"


@pytest.mark.slow
def test_sigint_during_a_turn_exits_130_in_one_line_and_leaves_nothing(tmp_path):
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    command = [sys.executable, "-m", "nextmm", "generate", "prompt=surf vlog", "model=tiny", "max_new_tokens=4",
               "num_inference_steps=400", "outputs=[image,audio,video]", f"output_dir={out}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "/400" not in seen:  # the turn is under way: the LLM has answered and a decoder is denoising
        chunk = os.read(process.stderr.fileno(), 4096).decode(errors="replace")
        assert chunk, f"the run ended before its turn began: {seen[-2000:]}"
        seen += chunk
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130
    lines = [line for line in rest.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]
    assert lines[-1].startswith("interrupted") and not any("Traceback" in line for line in lines), lines
    assert not out.exists() and not list(tmp_path.glob(".*"))
