"""TeacherCache: hit/miss, resume after interruption, other-teacher/dim/instruction and corruption detection."""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import shutil
import subprocess

import numpy as np
import pytest
from helpers import CountingTeacher

from jina5.teacher.cache import TeacherCache, TeacherCacheError, cache_text, text_key

TEXTS = [f"text number {i} about {w}" for i, w in enumerate(["cats", "dogs", "stocks", "rain", "music"] * 3)]


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
    assert len(list((tmp_path / "c").glob("part-*.json"))) == 2  # two committed parts survive
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


@pytest.mark.parametrize("damage", ["truncate", "flip", "truncate_keys"])
def test_corrupt_shard_is_detected(tmp_path, damage):
    TeacherCache(CountingTeacher(), path=tmp_path / "c", shard_size=4, progress=False).get(TEXTS[:4])
    emb = next((tmp_path / "c").glob("part-*.emb.npy"))
    target = emb.with_name(emb.name.replace(".emb.", ".keys.")) if damage == "truncate_keys" else emb
    data = bytearray(target.read_bytes())
    if damage.startswith("truncate"):
        target.write_bytes(data[: len(data) - 7])
    else:
        data[-1] ^= 0xFF
        target.write_bytes(data)
    with pytest.raises(TeacherCacheError, match=target.name if damage.startswith("truncate") else emb.name):
        TeacherCache(CountingTeacher(), path=tmp_path / "c", progress=False)


def test_an_uncommitted_part_is_ignored_and_recomputed(tmp_path):
    """Arrays without their .json (a writer killed between the two) are not read; the texts are computed."""
    teacher = CountingTeacher()
    want = TeacherCache(teacher, path=tmp_path / "c", shard_size=4, progress=False).get(TEXTS[:4])
    record = next((tmp_path / "c").glob("part-*.json"))
    record.unlink()
    teacher.calls = 0
    cache = TeacherCache(teacher, path=tmp_path / "c", shard_size=4, progress=False)
    assert len(cache) == 0
    np.testing.assert_array_equal(cache.get(TEXTS[:4]), want)
    assert teacher.calls == 4


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
    """Copy the first part (its arrays and record) into ``dst_dir``; returns the copied record."""
    record = sorted(src_dir.glob("part-*.json"))[0]
    name = record.name[: -len(".json")]
    for suffix in (".keys.npy", ".emb.npy", ".json"):
        shutil.copyfile(src_dir / f"{name}{suffix}", dst_dir / f"{name}{suffix}")
    return dst_dir / record.name


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


def _legacy_shard(path, keys, emb, origin=None):
    """A shard as the in-RAM cache before the memory-mapped store wrote it (jina5 <= 1240df8)."""
    key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 20)
    emb16 = emb.astype(np.float16)
    checksum = hashlib.sha256(key_arr.tobytes() + emb16.tobytes()).digest()
    extra = {k: np.array(v) for k, v in (origin or {}).items()}
    np.savez(path, keys=key_arr, emb=emb16, checksum=np.frombuffer(checksum, np.uint8), **extra)


def _legacy_cache(root, teacher, texts, with_origin):
    """A legacy cache directory of ``texts`` in shards of 4; returns their fp16 vectors as float32."""
    root.mkdir()
    meta = {"fingerprint": teacher.fingerprint, "instruction": "", "dim": teacher.dim, "dtype": "float16"}
    (root / "meta.json").write_text(json.dumps({**meta, "source": teacher.source}))
    origin = (
        {"fingerprint": teacher.fingerprint, "dim": teacher.dim, "instruction": ""} if with_origin else None
    )
    emb = teacher.embed(texts)
    for lo in range(0, len(texts), 4):
        keys = [text_key(t) for t in texts[lo : lo + 4]]
        _legacy_shard(root / f"shard-{lo:016x}.npz", keys, emb[lo : lo + 4], origin)
    return emb.astype(np.float16).astype(np.float32)


@pytest.mark.parametrize("with_origin", [True, False])
def test_legacy_shards_are_migrated_bit_for_bit_once(tmp_path, caplog, with_origin):
    """Shards of the in-RAM cache are verified and copied into parts once (left in place for older
    checkouts); shards without a recorded origin are accepted (meta.json matched) with one warning."""
    teacher = CountingTeacher()
    want = _legacy_cache(tmp_path / "c", teacher, TEXTS[:6], with_origin)
    teacher.calls = 0
    with caplog.at_level(logging.WARNING, logger="jina5.teacher.store"):
        got = TeacherCache(teacher, path=tmp_path / "c", progress=False).get(TEXTS[:6])
        TeacherCache(teacher, path=tmp_path / "c", progress=False)
    assert teacher.calls == 0
    np.testing.assert_array_equal(got, want)
    assert len(list((tmp_path / "c").glob("part-legacy-*.json"))) == 2
    assert len(list((tmp_path / "c").glob("shard-*.npz"))) == 2
    warnings = [r for r in caplog.records if "carry no teacher fingerprint" in r.getMessage()]
    assert len(warnings) == (0 if with_origin else 1)
    if warnings:
        assert "2 shard(s)" in warnings[0].getMessage()


def test_a_corrupt_or_foreign_legacy_shard_is_refused(tmp_path):
    a, b = CountingTeacher(seed=0), CountingTeacher(seed=1)
    _legacy_cache(tmp_path / "c", a, TEXTS[:4], with_origin=True)
    shard = next((tmp_path / "c").glob("shard-*.npz"))
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(TeacherCacheError, match=f"{shard.name}: truncated or corrupt"):
        TeacherCache(a, path=tmp_path / "c", progress=False)
    _legacy_cache(tmp_path / "d", a, TEXTS[:4], with_origin=True)
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    (tmp_path / "d" / "meta.json").write_text(json.dumps({**meta, "fingerprint": b.fingerprint}))
    with pytest.raises(TeacherCacheError, match=f"written by teacher {a.fingerprint[:16]}"):
        TeacherCache(b, path=tmp_path / "d", progress=False)


def _follow(advice: str) -> None:
    """Run the ``rm -rf -- <paths>`` command an error or warning of the store ends with, as a user would."""
    command = advice[advice.rindex(": rm -rf -- ") + 2 :]
    subprocess.run(shlex.split(command), check=True)


def _damage_part(root, how):
    record = sorted(root.glob("part-*.json"))[0]
    emb = record.with_name(record.name.replace(".json", ".emb.npy"))
    if how == "truncate":
        emb.write_bytes(emb.read_bytes()[:-7])
    elif how == "flip":
        data = bytearray(emb.read_bytes())
        data[-1] ^= 0xFF
        emb.write_bytes(data)
    elif how == "record":
        record.write_text("{not json")
    elif how == "foreign":
        other = root.parent / "other"
        TeacherCache(CountingTeacher(seed=1), path=other, shard_size=4, progress=False).get(TEXTS[:4])
        _copy_first_shard(other, root)
    elif how == "index":
        (root / "index.json").write_text("{not json")
    elif how == "index_checksum":
        keys = root / json.loads((root / "index.json").read_text())["keys"]
        data = bytearray(keys.read_bytes())
        data[-1] ^= 0xFF
        keys.write_bytes(data)
    elif how == "meta":
        (root / "meta.json").write_text("{not json")


@pytest.mark.parametrize(
    ("damage", "recomputed"),
    [
        ("truncate", 4),  # the case: deleting the .emb.npy alone gave the same error
        ("flip", 4),
        ("record", 4),
        ("foreign", 0),  # the copied part goes; this teacher's own parts stay
        ("index", 0),  # the index is rebuilt from the parts
        ("index_checksum", 0),
        ("meta", 8),  # the whole store goes
    ],
)
def test_the_stores_advice_to_delete_files_works_when_followed(tmp_path, damage, recomputed):
    """Issue 23, item 7: "delete the part to recompute" named the .emb.npy only, and deleting it gave the
    same error (the part's .json commit marker still claimed it). Each error of the store now ends with the
    command that deletes every file concerned; running it, the store opens, recomputes exactly the texts
    that went, and serves the vectors it served before."""
    root = tmp_path / "c"
    teacher = CountingTeacher()
    cache = TeacherCache(teacher, path=root, shard_size=4, progress=False)
    want = cache.get(TEXTS[:8])
    cache.write_index()
    _damage_part(root, damage)
    with pytest.raises(TeacherCacheError) as err:
        TeacherCache(CountingTeacher(), path=root, progress=False)
    _follow(str(err.value))
    again = CountingTeacher()
    np.testing.assert_array_equal(TeacherCache(again, path=root, progress=False).get(TEXTS[:8]), want)
    assert again.calls == recomputed


def test_the_advice_for_other_teachers_and_legacy_shards_works_when_followed(tmp_path, caplog):
    """The other "delete" ways out of the store, followed: a store made for another teacher (its whole
    directory), a corrupt legacy shard (the shard), and the warning on legacy shards without a teacher
    fingerprint (the shards and the parts they were migrated to, so their texts are computed again)."""
    a, b = CountingTeacher(seed=0), CountingTeacher(seed=1)
    TeacherCache(a, path=tmp_path / "a", progress=False).get(TEXTS[:3])
    with pytest.raises(TeacherCacheError) as err:
        TeacherCache(b, path=tmp_path / "a", progress=False)
    _follow(str(err.value))
    TeacherCache(b, path=tmp_path / "a", progress=False).get(TEXTS[:3])
    assert b.calls == 3

    _legacy_cache(tmp_path / "c", a, TEXTS[:8], with_origin=True)
    shard = sorted((tmp_path / "c").glob("shard-*.npz"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(TeacherCacheError) as err:
        TeacherCache(a, path=tmp_path / "c", progress=False)
    _follow(str(err.value))
    a.calls = 0
    TeacherCache(a, path=tmp_path / "c", progress=False).get(TEXTS[:8])
    assert a.calls == 4  # the deleted shard's texts

    _legacy_cache(tmp_path / "d", a, TEXTS[:8], with_origin=False)
    with caplog.at_level(logging.WARNING, logger="jina5.teacher.store"):
        TeacherCache(a, path=tmp_path / "d", progress=False)
    [warning] = [r.getMessage() for r in caplog.records if "carry no teacher fingerprint" in r.getMessage()]
    _follow(warning)
    a.calls = 0
    TeacherCache(a, path=tmp_path / "d", progress=False).get(TEXTS[:8])
    assert a.calls == 8 and not list((tmp_path / "d").glob("shard-*"))
