"""jina5.atomic: a reader sees the old file or the whole new one; a failed write leaves no trace."""

from __future__ import annotations

import pytest

from jina5.atomic import atomic_file, atomic_write_text


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
