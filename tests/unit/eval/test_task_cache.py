"""The built evaluation tasks cached on disk (jina5.eval.task_cache): equal to a fresh build, read without
building, invalidated by a changed data file or code, a corrupt entry rebuilt and never trusted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import compose
from omegaconf import OmegaConf

from jina5.assets import DATA_FILES
from jina5.data import corpora
from jina5.eval import task_cache, tasks
from jina5.eval.tasks import build_tasks


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A fresh cache root, and no in-process memo: every ``build_tasks`` here reads the disk or builds."""
    monkeypatch.setenv("JINA5_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tasks, "_BUILT", {})
    return tmp_path / "cache"


def _smoke() -> dict:
    return OmegaConf.to_container(compose(["eval=smoke", "model=none"], "eval").eval, resolve=True)


def _fields(t: tasks.EvalTask) -> tuple:
    return (t.type, t.dataset, t.language, t.split, t.name, t.inputs, t.settings, t.info, t.key)


def _no_build(*args, **kwargs):
    raise AssertionError("the tasks were built, not read from the cache")


def _forget(monkeypatch) -> None:
    """A new process: no in-process memo."""
    monkeypatch.setattr(tasks, "_BUILT", {})


@pytest.mark.integration
def test_cached_tasks_equal_a_fresh_build_and_are_read_without_building(cache, monkeypatch):
    cfg = _smoke()
    fresh, fresh_skipped = tasks._build_tasks(cfg, None)
    build_tasks(cfg)  # builds and writes the entry
    entries = list((cache / "eval-tasks").glob("*.pkl"))
    assert len(entries) == 1
    _forget(monkeypatch)
    monkeypatch.setattr(tasks, "_build_tasks", _no_build)
    cached, skipped = build_tasks(cfg)
    assert {t.type for t in cached} == {"retrieval", "sts", "classification", "clustering"}
    assert [_fields(t) for t in cached] == [_fields(t) for t in fresh]
    assert skipped == fresh_skipped and any(s.name == "retrieval/parlspeech_nl" for s in skipped)
    qrels = next(t for t in cached if t.type == "retrieval").inputs["qrels"]
    assert all(isinstance(q, int) and all(isinstance(d, int) for d in rel) for q, rel in qrels.items())
    # another config (a different cap) is another entry
    monkeypatch.setattr(tasks, "_build_tasks", lambda c, types: ([], []))
    build_tasks({**cfg, "sts": {**cfg["sts"], "max_pairs": 7}})
    assert len(list((cache / "eval-tasks").glob("*.pkl"))) == 2


def _lee_copies(tmp_path: Path, monkeypatch) -> dict[str, Path]:
    """The Lee STS files copied to ``tmp_path`` and located there by the parsers."""
    real = corpora.package_file
    copies = {}
    for key in ("lee", "lee_similarities"):
        dist, rel = DATA_FILES[key]
        copies[rel] = tmp_path / Path(rel).name
        shutil.copy(real(dist, rel), copies[rel])
    monkeypatch.setattr(
        corpora, "package_file", lambda dist, rel, verify=False: copies.get(rel) or real(dist, rel)
    )
    return copies


def _sts_scores(cfg: dict) -> list[float]:
    (task,), _ = build_tasks(cfg, ["sts"])
    return task.inputs["scores"]


@pytest.mark.integration
def test_a_changed_data_file_rebuilds_the_tasks(tmp_path, monkeypatch, caplog):
    copies = _lee_copies(tmp_path, monkeypatch)
    cfg = _smoke()
    cfg["sts"] = {**cfg["sts"], "max_pairs": None}  # all 1,225 pairs
    before = _sts_scores(cfg)
    sims = copies[DATA_FILES["lee_similarities"][1]]
    text = sims.read_text()
    assert text.startswith("1\t0.3\t")  # S[0, 1] = 0.3, S[1, 0] = 0: the pair (doc 0, doc 1) scores 0.3
    sims.write_text("1\t0.9\t" + text[len("1\t0.3\t") :])
    _forget(monkeypatch)
    after = _sts_scores(cfg)
    assert f"source file changed: {sims}" in caplog.text
    assert [(a, b) for a, b in zip(before, after, strict=True) if a != b] == [(0.3, 0.9)]
    # the rebuilt entry is the one read next
    _forget(monkeypatch)
    monkeypatch.setattr(tasks, "_build_tasks", _no_build)
    assert _sts_scores(cfg) == after


def test_a_corrupt_entry_is_rebuilt_not_trusted(cache, tmp_path, monkeypatch, caplog):
    _lee_copies(tmp_path, monkeypatch)
    cfg = _smoke()
    good = _sts_scores(cfg)
    (path,) = (cache / "eval-tasks").glob("*.pkl")
    data = path.read_bytes()
    for bad in (data[:-1] + bytes([data[-1] ^ 1]), data[: len(data) // 2], b"", b"not an entry"):
        path.write_bytes(bad)
        _forget(monkeypatch)
        caplog.clear()
        assert _sts_scores(cfg) == good
        assert f"the cache entry {path} is not used (corrupt" in caplog.text
        assert task_cache.read_entry(path)[1] is None  # replaced by a whole entry
    # a checksummed entry whose recorded source vanished is rebuilt too
    _forget(monkeypatch)
    src = next(p for p in tmp_path.iterdir() if p.name == Path(DATA_FILES["lee"][1]).name)
    content = src.read_bytes()
    src.unlink()
    assert task_cache.read_entry(path) == (None, f"source file changed: {src}")
    src.write_bytes(content)


def test_the_key_follows_the_config_and_the_code(monkeypatch):
    spec = [{"split_seed": 0}, None]
    path = task_cache.cache_path(spec)
    assert task_cache.cache_path([{"split_seed": 0}, None]) == path
    assert task_cache.cache_path([{"split_seed": 1}, None]) != path
    assert task_cache.cache_path([{"split_seed": 0}, ["sts"]]) != path
    monkeypatch.setattr(task_cache, "CODE_MODULES", task_cache.CODE_MODULES[:-1])
    assert task_cache.cache_path(spec) != path
