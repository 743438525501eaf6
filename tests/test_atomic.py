import pytest

from nextmm.atomic import staged_file, staged_folder


def test_staged_folder_replaces_the_target_only_on_success(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_folder(target) as staging:
            (staging / "new.txt").write_text("half")
            raise RuntimeError("crash mid-write")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (target / "old.txt").read_text() == "old"
    with staged_folder(target) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert target.stat().st_mode & 0o077, "the folder gets the user's usual mode, not mkdtemp's 0700"


def test_staged_file_keeps_the_old_file_on_failure_and_leaves_no_temp(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(ValueError):
        with staged_file(target) as staging:
            assert staging.suffix == ".json" and staging.parent == tmp_path
            staging.write_text("half")
            raise ValueError("crash mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["result.json"]
    with staged_file(target) as staging:
        staging.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["result.json"]
