"""jina5.atomic: a reader sees the old file (folder) or the whole new one; a failed write leaves no trace."""

from __future__ import annotations

import pytest

from jina5.atomic import atomic_dir, atomic_file, atomic_write_text, remove_dead_stages


def test_a_write_replaces_the_file_whole_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "done.json"  # parents are made
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["done.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp_file(tmp_path):
    path = tmp_path / "config.yaml"
    atomic_write_text(path, "a: 1\n")
    with pytest.raises(RuntimeError, match="disk full"), atomic_file(path) as fh:
        fh.write(b"a: 2\n")  # written to the temp file only
        raise RuntimeError("disk full")
    assert path.read_text() == "a: 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_a_folder_is_replaced_whole_and_a_failed_write_leaves_the_old_one(tmp_path):
    path = tmp_path / "out"
    with atomic_dir(path) as new:
        (new / "a.txt").write_text("1")
        assert not path.exists()  # written beside it
    with atomic_dir(path) as new:
        (new / "b.txt").write_text("2")
    assert sorted(p.name for p in path.iterdir()) == ["b.txt"]  # a.txt does not survive
    with pytest.raises(RuntimeError, match="killed"), atomic_dir(path) as new:
        (new / "c.txt").write_text("3")
        raise RuntimeError("killed")
    assert sorted(p.name for p in path.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_dead_writers_staging_folders_are_removed_and_live_ones_kept(tmp_path):
    import fcntl
    import os

    path = tmp_path / "out"
    dead, live = tmp_path / ".out.dead0000.partial", tmp_path / ".out.live0000.partial"
    for stage in (dead, live):
        (stage / "new").mkdir(parents=True)
        (stage / "new" / "model.safetensors").write_bytes(b"\0" * 8)
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a writer still at work (its own open file, as another process's)
    try:
        with atomic_dir(path, foreign=lambda old, new: []) as new:
            (new / "x").write_text("x")
        assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out"]
    finally:
        os.close(fd)
    assert remove_dead_stages(path) == [live]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_folder_with_foreign_entries_is_refused_and_kept(tmp_path):
    path = tmp_path / "out"
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    refused = pytest.raises(FileExistsError, match=r"out holds notes.txt, which this write does not produce")
    with refused, atomic_dir(path, foreign=lambda old, new: [p.name for p in old.iterdir()]) as new:
        (new / "x").write_text("x")
    assert [p.name for p in path.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
