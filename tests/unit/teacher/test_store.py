"""The memory-mapped teacher store: lookups against a reference dict, the cold-fill order of the cache
before it, the sharded pre-compute (2 processes, each text once, resumable), rank-0 filling in training."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch
from helpers import CountingTeacher

from jina5.data.datamodule import PairDataModule
from jina5.teacher.cache import TeacherCache, TeacherCacheError, keys_of, text_key
from jina5.teacher.precompute import plan_chunks, precompute, precompute_from_config
from jina5.teacher.store import TeacherStore
from jina5.teacher.store_files import KEY_DTYPE

TEXTS = [
    f"{w} number {i}" + " tail" * (i % 5) for i, w in enumerate(["cat", "dog", "stock", "rain", "tune"] * 6)
]
QUERY = "q: "


def _store(path, dim=8):
    return TeacherStore(path, {"fingerprint": "f" * 64, "instruction": "", "dim": dim, "source": "test"})


def test_lookups_return_the_reference_rows(tmp_path):
    """Parts in the index file and parts after it, a key stored twice: locate + gather == a dict
    built from the parts in name order (first part wins), and absent keys come back as -1."""
    rng = np.random.default_rng(0)
    store = _store(tmp_path / "s")
    reference: dict[bytes, np.ndarray] = {}
    texts = [f"t{i}" for i in range(50)]
    written = []
    for lo, hi, name in ((0, 20, "part-a"), (15, 35, "part-b"), (30, 50, "part-c")):  # overlaps 15-19, 30-34
        emb = rng.standard_normal((hi - lo, 8)).astype(np.float16)
        store.write_part(keys_of(texts[lo:hi]), emb, name=name)
        written.append((texts[lo:hi], emb))
        if name == "part-b":
            store.write_index()  # a and b indexed; c only in the in-memory delta
    for chunk, emb in written:
        for t, row in zip(chunk, emb, strict=True):
            reference.setdefault(text_key(t), row.astype(np.float32))
    for opened in (store, _store(tmp_path / "s")):  # this process's, and a fresh reader's
        assert len(opened) == 50 and opened.unindexed_parts() == (
            3 if opened is store else 1
        )  # the writer keeps its numbering
        query = [texts[i] for i in rng.integers(0, 50, 200)] + ["absent"]
        loc = opened.locate(keys_of(query))
        assert (loc[:-1, 0] >= 0).all() and tuple(loc[-1]) == (-1, -1)
        np.testing.assert_array_equal(
            opened.gather(loc[:-1]), np.stack([reference[text_key(t)] for t in query[:-1]])
        )
        with pytest.raises(KeyError, match="1 texts are not in the teacher store"):
            opened.gather(loc)


def test_read_only_store_writes_nothing(tmp_path):
    with pytest.raises(TeacherCacheError, match="python -m jina5.teacher"):
        TeacherStore(tmp_path / "none", {"fingerprint": "f", "instruction": "", "dim": 8}, read_only=True)
    store = _store(tmp_path / "s")
    store.write_part(keys_of(["a"]), np.ones((1, 8), np.float16))
    reader = TeacherStore(store.path, store.meta, read_only=True)
    with pytest.raises(TeacherCacheError, match="read-only"):
        reader.write_part(keys_of(["b"]), np.ones((1, 8), np.float16))
    assert reader.gather(reader.locate(keys_of(["a"])))[0].tolist() == [1.0] * 8


def _todays_fill(teacher, texts, shard_size):
    """The cache's cold fill since the first version, written out: distinct texts in first-occurrence
    order, sorted by length (stable), one ``Teacher.embed`` call per chunk, stored as fp16."""
    distinct = list(dict.fromkeys(texts))
    distinct.sort(key=len)
    out = {}
    for lo in range(0, len(distinct), shard_size):
        chunk = distinct[lo : lo + shard_size]
        for t, row in zip(chunk, teacher.embed(chunk).astype(np.float16), strict=True):
            out[t] = row.astype(np.float32)
    return np.stack([out[t] for t in texts])


def test_a_cold_fill_embeds_the_same_chunks_as_before(tmp_path):
    """Bit for bit: the same texts in the same chunks (the encoder's batches depend on them)."""
    texts = TEXTS + TEXTS[:7]
    teacher = CountingTeacher()
    got = TeacherCache(teacher, path=tmp_path / "c", shard_size=8, progress=False).get(texts)
    assert teacher.calls == len(set(texts))
    np.testing.assert_array_equal(got, _todays_fill(CountingTeacher(), texts, 8))


def _steps(root, teacher):
    query = TeacherCache(teacher, QUERY, path=root / "q", shard_size=4, progress=False)
    document = TeacherCache(teacher, path=root / "d", shard_size=4, progress=False)
    return [(query, TEXTS[:12]), (document, TEXTS[6:]), (query, TEXTS[10:16])]


def _precompute_rank(rank, world, root, counts):
    teacher = CountingTeacher()
    precompute(_steps(root, teacher), rank, world, shard_size=4, poll_s=0.05)
    (counts / f"rank{rank}").write_text(str(teacher.calls))


def _vectors(root):
    teacher = CountingTeacher()
    query = TeacherCache(teacher, QUERY, path=root / "q", progress=False)
    document = TeacherCache(teacher, path=root / "d", progress=False)
    return query.get(TEXTS[:16]), document.get(TEXTS[6:]), teacher.calls


def test_two_rank_precompute_writes_each_text_once(tmp_path):
    """2 spawned processes share the plan: every text embedded once (no key in two parts), each
    store indexed, and the vectors equal one process filling the caches in order."""
    counts = tmp_path / "counts"
    counts.mkdir()
    torch.multiprocessing.spawn(_precompute_rank, args=(2, tmp_path / "two", counts), nprocs=2)
    embedded = [int((counts / f"rank{r}").read_text()) for r in range(2)]
    assert all(embedded) and sum(embedded) == len(set(TEXTS[:16])) + len(set(TEXTS[6:]))
    for side in ("q", "d"):
        keys = np.concatenate([np.load(f) for f in (tmp_path / "two" / side).glob("part-*.keys.npy")])
        assert len(keys) == len(np.unique(keys))
        index = json.loads((tmp_path / "two" / side / "index.json").read_text())
        assert index["rows"] == len(keys)
    assert not list((tmp_path / "two").glob("*/plan-*"))
    q2, d2, calls = _vectors(tmp_path / "two")
    assert calls == 0
    sequential = CountingTeacher()  # the data module's order: each step a fill
    for cache, texts in _steps(tmp_path / "one", sequential):
        cache.fill(texts)
    q1, d1, _ = _vectors(tmp_path / "one")
    np.testing.assert_array_equal(q2, q1)
    np.testing.assert_array_equal(d2, d1)


def test_plan_is_the_sequential_fill_order(tmp_path):
    steps = _steps(tmp_path, CountingTeacher())
    chunks = plan_chunks(steps, 4)
    query_texts = [t for no, c in chunks if no == 0 for t in c]
    assert query_texts == sorted(dict.fromkeys(TEXTS[:12]), key=len) + sorted(
        [t for t in dict.fromkeys(TEXTS[10:16]) if t not in TEXTS[:12]], key=len
    )
    assert [len(c) for no, c in chunks if no == 1] == [4, 4, 4, 4, 4, 4]


def test_a_killed_precompute_resumes_with_only_the_rest(tmp_path):
    class Crashing(CountingTeacher):
        def embed(self, texts, instruction=""):
            if self.calls >= 8:
                raise KeyboardInterrupt
            return super().embed(texts, instruction)

    with pytest.raises(KeyboardInterrupt):
        precompute(_steps(tmp_path / "s", Crashing()), shard_size=4)
    assert list((tmp_path / "s" / "q").glob("plan-*.npz"))  # kept for the rerun
    rerun = CountingTeacher()
    precompute(_steps(tmp_path / "s", rerun), shard_size=4)
    total = len(set(TEXTS[:16])) + len(set(TEXTS[6:]))
    assert rerun.calls == total - 8
    unbroken = tmp_path / "u"
    precompute(_steps(unbroken, CountingTeacher()), shard_size=4)
    for got, want in zip(_vectors(tmp_path / "s")[:2], _vectors(unbroken)[:2], strict=True):
        np.testing.assert_array_equal(got, want)  # the same plan, so the same chunks


def _stub_trainer(rank, events):
    strategy = types.SimpleNamespace(
        root_device=torch.device("cpu"), barrier=lambda name=None: events.append((rank, "barrier"))
    )
    return types.SimpleNamespace(is_global_zero=rank == 0, world_size=2, global_rank=rank, strategy=strategy)


def _datamodule(teacher):
    return PairDataModule(
        {"bbc": {"batch_size": 4, "max_rows": 12}}, encoder=None, teacher=teacher, dev_datasets=[]
    )


def test_training_fills_on_rank_zero_only(tmp_path, monkeypatch):
    """Rank 0 fills then meets the barrier; rank 1 meets it first, opens read-only, embeds nothing."""
    monkeypatch.setenv("JINA5_CACHE", str(tmp_path))
    events: list = []
    for rank in (1, 0):  # rank 1 first: a read-only open of an empty store is an error, not a fill
        dm = _datamodule(teacher := CountingTeacher())
        dm.trainer = _stub_trainer(rank, events)
        if rank == 1:
            with pytest.raises(TeacherCacheError, match="python -m jina5.teacher"):
                dm.setup("fit")
            assert teacher.calls == 0
        else:
            dm.setup("fit")
    assert teacher.calls > 0 and events == [(1, "barrier"), (0, "barrier")]
    reader = _datamodule(idle := CountingTeacher())
    reader.trainer = _stub_trainer(1, events)
    reader.setup("fit")
    assert idle.calls == 0
    np.testing.assert_array_equal(reader.tables[0].teacher_query[:], dm.tables[0].teacher_query[:])
    assert reader.teacher_caches(read_only=True)[0].store.unindexed_parts() == 0  # rank 0 merged the index


def test_precompute_from_the_training_config_leaves_nothing_to_fill(tmp_path, monkeypatch):
    """`python -m jina5.teacher <overrides>` embeds exactly what training's setup looks up."""
    from helpers import run_cfg

    from jina5.teacher.cache import Teacher
    from jina5.train import build

    cfg = run_cfg(tmp_path, "experiment=ablation/combined")
    precompute_from_config(cfg)

    def no_embedding(self, texts, instruction=""):
        raise AssertionError(f"training embedded {len(texts)} texts after the pre-compute")

    monkeypatch.setattr(Teacher, "embed", no_embedding)
    _, datamodule, _ = build(cfg)
    datamodule.setup("fit")
    assert datamodule.tables[0].teacher_query.shape[1] == 32


def test_keys_are_fixed_width():
    keys = keys_of(["a", "b"])
    assert keys.dtype == KEY_DTYPE and keys[0] == text_key("a")


def test_a_second_precompute_on_one_store_waits_and_reads_instead_of_computing(tmp_path):
    """Issue 23, item 8: two ``python -m jina5.teacher`` on one store both computed every text, with no
    word. Now the second, started while the first is inside its first chunk (held there by a gate file),
    takes only the chunks nobody holds, then waits for the first's with a message naming its PID, and
    reads it once the gate opens: every text is embedded once in all, and no lock file is left."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from helpers import SMALL_DATA, TINY, TINY_TEACHER

    root = Path(__file__).resolve().parents[3]
    log, gate, second_out = tmp_path / "embeds.log", tmp_path / "gate", tmp_path / "second.out"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")]),
        "JINA5_CACHE": str(tmp_path / "cache"),
        "JINA5_TEST_EMBED_LOG": str(log),
    }
    command = [
        sys.executable,
        "-m",
        "jina5.teacher",
        *TINY["bert"],
        *TINY_TEACHER,
        *SMALL_DATA,
        "teacher._target_=helpers.LoggingTeacher",
        f"paths.output_root={tmp_path / 'outputs'}",
    ]
    gated = {**env, "JINA5_TEST_EMBED_GATE": str(gate)}
    first = subprocess.Popen(command, env=gated, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not (log.exists() and log.read_text()) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until the first process is inside its first chunk
    with open(second_out, "w") as out:
        second = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        while "waiting to read them" not in second_out.read_text() and second.poll() is None:
            time.sleep(0.05)  # until the second waits for the first's chunk (or, unlocked, has finished)
            assert time.monotonic() < deadline + 300
        gate.touch()
        second.wait(timeout=600)
    first_out = first.communicate(timeout=600)[0]
    assert first.returncode == 0, first_out[-3000:]
    assert second.returncode == 0, second_out.read_text()[-3000:]
    embedded: dict[int, int] = {}
    for line in log.read_text().splitlines():
        pid, n = map(int, line.split())
        embedded[pid] = embedded.get(pid, 0) + n
    stores = [p.parent for p in (tmp_path / "cache" / "teacher").glob("*/meta.json")]
    stored = sum(json.loads((s / "index.json").read_text())["rows"] for s in stores)
    assert sum(embedded.values()) == stored > 0  # each text once, whichever process embedded it
    assert embedded[first.pid] and embedded[second.pid]  # the second took the chunks nobody held
    assert f"are being embedded by process {first.pid} on " in second_out.read_text()
    assert not [f for s in stores for f in (s / "fill-locks").glob("*.lock")]  # removed once stored
