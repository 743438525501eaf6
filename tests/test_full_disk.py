"""A full disk, for real: a 1 MiB tmpfs, filled, as the output folder's filesystem.

Each writer (Pillow, libsndfile, ffmpeg) reports a full disk in its own words; every case must end in one line,
exit code 1, no traceback and nothing left on the disk. Mounting needs root and a machine that allows it; where
it is refused the tests are skipped with the reason.
"""

import errno
import io
import os
import subprocess
import sys

import pytest

from nextmm import cli
from nextmm.cli import chat
from nextmm.cli.generate import main

FAST = ["prompt=surf vlog", "model=tiny", "max_new_tokens=4", "num_inference_steps=1", "quiet=true"]
FILLER = "filler"


def fill(disk):
    """Write zeros until the filesystem refuses: not one block is left."""
    fd = os.open(disk / FILLER, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as error:
        assert error.errno == errno.ENOSPC, error
    finally:
        os.close(fd)


@pytest.fixture
def full_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True,
                                 text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here: a full disk needs a small tmpfs")
    if mounted.returncode != 0:
        pytest.skip(f"mounting a small tmpfs is not permitted here ({mounted.stderr.strip() or 'refused'})")
    try:
        fill(disk)
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def generate(capsys, *argv):
    with pytest.raises(SystemExit) as exit_:
        cli.run("generate", main, [*FAST, *argv])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def on_disk(disk):
    return sorted(str(p.relative_to(disk)) for p in disk.rglob("*"))


@pytest.mark.parametrize("medium", ["image", "audio", "video"])  # Pillow, libsndfile, ffmpeg
def test_a_full_disk_is_one_line_exit_1_and_leaves_nothing(full_disk, capsys, medium):
    out = full_disk / "runs" / "out"  # its parent is made for it, and must go too
    code, printed, err = generate(capsys, f"outputs=[{medium}]", f"output_dir={out}")
    assert code == 1, err
    assert err.splitlines() == [f"error: no space left on the disk writing {out}: nothing half-written is left; "
                                "free some space and run again"]
    assert printed == "" and on_disk(full_disk) == [FILLER]


def test_the_default_folder_on_a_full_disk_leaves_nothing(full_disk, capsys, monkeypatch):
    monkeypatch.chdir(full_disk)
    code, _, err = generate(capsys, "outputs=[image]")
    assert code == 1 and len(err.splitlines()) == 1 and "no space left" in err
    assert on_disk(full_disk) == [FILLER]  # no outputs/<date>/<time>-<hex>/, no outputs/


def test_chat_on_a_full_disk_says_so_and_goes_on(full_disk, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("surf\nagain\n"))
    out = full_disk / "session"
    with pytest.raises(SystemExit) as exit_:
        cli.run("chat", chat.main, [*FAST[1:], "outputs=[image]", f"output_dir={out}"])
    printed, err = capsys.readouterr()
    assert exit_.value.code == 0
    assert [line.split(":")[0] for line in err.splitlines()] == ["error"] * 2  # one line for each turn
    assert all(f"no space left on the disk writing {out}/turn_" in line for line in err.splitlines())
    assert printed.startswith("nextmm chat") and "media written" not in printed
    assert not [p for p in full_disk.rglob("*") if p.is_file() and p.name != FILLER]


@pytest.mark.slow
def test_a_full_disk_in_a_fresh_process_has_no_traceback(full_disk):
    out = full_disk / "out"
    command = [sys.executable, "-m", "nextmm", "generate", *FAST, "outputs=[image,audio,video]", f"output_dir={out}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"error: no space left on the disk writing {out}: nothing half-written is "
                                        "left; free some space and run again"]
    assert on_disk(full_disk) == [FILLER]
