"""TeacherCache: hit/miss, resume after interruption, other-teacher/dim/instruction and corruption detection."""

from __future__ import annotations

import logging
import shutil
import zipfile

import numpy as np
import pytest

from jina5.encoder import Encoder
from jina5.teacher import Teacher, TeacherCache, TeacherCacheError, cache_text
from jina5.tiny import tiny_model_and_tokenizer

TEXTS = [f"text number {i} about {w}" for i, w in enumerate(["cats", "dogs", "stocks", "rain", "music"] * 3)]


class CountingTeacher(Teacher):
    """A tiny teacher that counts how many texts it embedded."""

    def __init__(self, seed=0, hidden=32):
        model, tok = tiny_model_and_tokenizer("bert", hidden=hidden, seed=seed)
        super().__init__(encoder=Encoder(model, tokenizer=tok), batch_size=4)
        self.calls = 0

    def embed(self, texts, instruction=""):
        self.calls += len(texts)
        return super().embed(texts, instruction)


def test_hit_miss_and_values(tmp_path):
    teacher = CountingTeacher()
    cache = TeacherCache(teacher, path=tmp_path / "c", shard_size=4, progress=False)
    texts = TEXTS[:6] + TEXTS[:2]  # duplicates are computed once
    got = cache.get(texts)
    assert teacher.calls == 6 and len(cache) == 6
    np.testing.assert_allclose(got, teacher.embed(texts), atol=2e-3)  # fp16 storage
    teacher.calls = 0
    again = TeacherCache(teacher, path=tmp_path / "c", progress=False).get(texts)
    assert teacher.calls == 0
    np.testing.assert_array_equal(got, again)
    assert "  text number 0   about cats " in cache  # keys use collapsed whitespace
    assert cache_text(" a\u0301  b ") == "\u00e1 b"


def test_interrupted_run_resumes_without_recomputing(tmp_path):
    class Crashing(CountingTeacher):
        def embed(self, texts, instruction=""):
            if self.calls >= 8:
                raise KeyboardInterrupt
            return super().embed(texts, instruction)

    crashing = Crashing()
    with pytest.raises(KeyboardInterrupt):
        TeacherCache(crashing, path=tmp_path / "c", shard_size=4, progress=False).get(TEXTS)
    assert len(list((tmp_path / "c").glob("shard-*.npz"))) == 2  # two finished shards survive
    assert not list((tmp_path / "c").glob("*.tmp*"))
    fresh = CountingTeacher()
    cache = TeacherCache(fresh, path=tmp_path / "c", shard_size=4, progress=False)
    assert len(cache) == 8
    cache.get(TEXTS)
    assert fresh.calls == len(set(TEXTS)) - 8


def test_other_teacher_or_instruction_is_rejected(tmp_path):
    TeacherCache(CountingTeacher(seed=0), path=tmp_path / "c", progress=False).get(TEXTS[:3])
    with pytest.raises(TeacherCacheError, match="fingerprint"):
        TeacherCache(CountingTeacher(seed=1), path=tmp_path / "c", progress=False)
    with pytest.raises(TeacherCacheError, match="dim"):
        wide = CountingTeacher(hidden=64)
        wide._fingerprint = TeacherCache(
            CountingTeacher(), path=tmp_path / "x", progress=False
        ).teacher.fingerprint
        TeacherCache(wide, path=tmp_path / "c", progress=False)
    with pytest.raises(TeacherCacheError, match="instruction"):
        TeacherCache(
            CountingTeacher(seed=0), instruction="Identify the topic: ", path=tmp_path / "c", progress=False
        )


def test_default_paths_separate_teachers_and_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("JINA5_CACHE", str(tmp_path))
    a = TeacherCache(CountingTeacher(seed=0), progress=False)
    b = TeacherCache(CountingTeacher(seed=1), progress=False)
    c = TeacherCache(CountingTeacher(seed=0), instruction="topic: ", progress=False)
    assert len({a.path, b.path, c.path}) == 3


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_shard_is_detected(tmp_path, damage):
    TeacherCache(CountingTeacher(), path=tmp_path / "c", shard_size=4, progress=False).get(TEXTS[:4])
    shard = next((tmp_path / "c").glob("shard-*.npz"))
    data = bytearray(shard.read_bytes())
    if damage == "truncate":
        shard.write_bytes(data[: len(data) // 2])
    else:
        with zipfile.ZipFile(shard) as z:
            arrays = {n: z.read(n) for n in z.namelist()}
        emb = bytearray(arrays["emb.npy"])
        emb[-1] ^= 0xFF
        arrays["emb.npy"] = bytes(emb)
        with zipfile.ZipFile(shard, "w") as z:
            for n, b in arrays.items():
                z.writestr(n, b)
    with pytest.raises(TeacherCacheError, match=shard.name):
        TeacherCache(CountingTeacher(), path=tmp_path / "c", progress=False)


def test_two_caches_on_one_directory_share_and_never_clobber(tmp_path):
    teacher = CountingTeacher()
    first = TeacherCache(teacher, path=tmp_path / "c", shard_size=4, progress=False)
    second = TeacherCache(
        teacher, path=tmp_path / "c", shard_size=4, progress=False
    )  # opened before any shard
    a = first.get(TEXTS[:5])
    teacher.calls = 0
    b = second.get(TEXTS[:5] + TEXTS[5:8])
    assert teacher.calls == 3  # it picked up the first cache's shards and computed only the rest
    np.testing.assert_array_equal(a, b[:5])
    reopened = TeacherCache(CountingTeacher(), path=tmp_path / "c", progress=False)
    assert len(reopened) == 8


def _copy_first_shard(src_dir, dst_dir):
    shard = sorted(src_dir.glob("shard-*.npz"))[0]
    copied = dst_dir / shard.name
    shutil.copyfile(shard, copied)
    return copied


def test_a_foreign_shard_is_refused_with_its_file_named(tmp_path):
    """Teacher A's shard copied into teacher B's cache (same dim, so the shapes fit) is refused."""
    a, b = CountingTeacher(seed=0), CountingTeacher(seed=1)
    TeacherCache(a, path=tmp_path / "a", shard_size=4, progress=False).get(TEXTS[:4])
    cache_b = TeacherCache(b, path=tmp_path / "b", shard_size=4, progress=False)
    cache_b.get(TEXTS[4:8])
    copied = _copy_first_shard(tmp_path / "a", tmp_path / "b")
    want = f"{copied.name}: written by teacher {a.fingerprint[:16]}, this cache is {b.fingerprint[:16]}"
    with pytest.raises(TeacherCacheError, match=want):
        cache_b.refresh()
    with pytest.raises(TeacherCacheError, match=want):
        TeacherCache(CountingTeacher(seed=1), path=tmp_path / "b", progress=False)


def test_a_shard_of_another_instruction_is_refused(tmp_path):
    teacher = CountingTeacher()
    TeacherCache(teacher, instruction="topic: ", path=tmp_path / "t", progress=False).get(TEXTS[:2])
    TeacherCache(teacher, path=tmp_path / "plain", progress=False).get(TEXTS[2:4])
    copied = _copy_first_shard(tmp_path / "t", tmp_path / "plain")
    with pytest.raises(TeacherCacheError, match=f"{copied.name}: written with instruction='topic: '"):
        TeacherCache(teacher, path=tmp_path / "plain", progress=False)


def test_legacy_shards_without_origin_are_accepted_with_one_warning(tmp_path, caplog):
    """Shards written before they recorded their teacher still load (meta.json matched), warned once."""
    teacher = CountingTeacher()
    got = TeacherCache(teacher, path=tmp_path / "c", shard_size=4, progress=False).get(TEXTS[:6])
    for shard in (tmp_path / "c").glob("shard-*.npz"):  # strip the origin: what older code wrote
        with zipfile.ZipFile(shard) as z:
            arrays = {n: z.read(n) for n in z.namelist() if n in ("keys.npy", "emb.npy", "checksum.npy")}
        with zipfile.ZipFile(shard, "w") as z:
            for n, data in arrays.items():
                z.writestr(n, data)
    teacher.calls = 0
    with caplog.at_level(logging.WARNING, logger="jina5.teacher"):
        again = TeacherCache(teacher, path=tmp_path / "c", progress=False).get(TEXTS[:6])
        TeacherCache(teacher, path=tmp_path / "c", progress=False)
    assert teacher.calls == 0
    np.testing.assert_array_equal(got, again)
    warnings = [r for r in caplog.records if "carry no teacher fingerprint" in r.getMessage()]
    assert len(warnings) == 1 and "2 shard(s)" in warnings[0].getMessage()
