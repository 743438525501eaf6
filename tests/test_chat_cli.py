"""``nextmm chat``: a turn that fails, for whatever reason, is one line and the conversation goes on."""

import errno
import io

import pytest

from nextmm import cli
from nextmm.cli import chat
from nextmm.inference import conversation

FAST = ["model=tiny", "max_new_tokens=4", "num_inference_steps=1", "quiet=true"]


def run_chat(monkeypatch, capsys, lines, *argv):
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"{line}\n" for line in lines)))
    with pytest.raises(SystemExit) as exit_:
        cli.run("chat", chat.main, [*FAST, *argv])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def test_an_unexpected_error_in_a_turn_is_one_line_and_the_conversation_goes_on(tmp_path, monkeypatch, capsys):
    seen = []  # the messages each turn answered
    real_turn = conversation.generate_turn

    def second_turn_fails(model, messages, settings):
        seen.append([(m.role, m.text) for m in messages])
        if messages[-1].text == "boom":
            raise RuntimeError("the decoder exploded\nin a second line")
        return real_turn(model, messages, settings)

    monkeypatch.setattr(conversation, "generate_turn", second_turn_fails)
    out = tmp_path / "session"
    code, printed, err = run_chat(monkeypatch, capsys, ["surf", "boom", "again"], f"output_dir={out}")

    assert code == 0
    log = out / chat.ERRORS_LOG
    assert err.splitlines() == [
        "internal error, not caused by your input (RuntimeError: the decoder exploded): the traceback is in "
        f"{log}, please report it; the turn is left out of the conversation, the conversation goes on"]
    assert "Traceback (most recent call last)" in log.read_text() and "in a second line" in log.read_text()
    # the third turn read the first turn and its answer, and nothing of the failed one
    first_answer = seen[1][1]
    assert first_answer[0] == "assistant"
    assert seen[2] == [("user", "surf"), first_answer, ("user", "again")]
    assert len(printed.strip().splitlines()) >= 3  # the banner and both answers


@pytest.mark.parametrize("failure, expected", [
    (OSError(errno.ENOSPC, "No space left on device"), "error: no space left on the disk writing {folder}: this "
     "turn's media were not written"),
    (ValueError("a codec's complaint"), "internal error, not caused by your input (ValueError: a codec's complaint)"),
])
def test_media_that_cannot_be_written_are_one_line_and_the_conversation_goes_on(tmp_path, monkeypatch, capsys,
                                                                                failure, expected):
    calls = []
    real_write = chat.write_turn

    def first_write_fails(turn, folder, **kwargs):
        calls.append(folder)
        if len(calls) == 1:
            raise failure
        return real_write(turn, folder, **kwargs)

    monkeypatch.setattr(chat, "write_turn", first_write_fails)
    out = tmp_path / "session"
    code, printed, err = run_chat(monkeypatch, capsys, ["surf", "again"], f"output_dir={out}", "outputs=[image]")

    assert code == 0
    assert len(err.splitlines()) == 1 and err.startswith(expected.format(folder=out / "turn_1")), err
    assert not (out / "turn_1").exists() and (out / "turn_2" / "result.json").is_file()
    assert f"(media written to {out / 'turn_2'})" in printed
