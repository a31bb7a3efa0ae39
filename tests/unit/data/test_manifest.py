"""``data_manifest.json``'s history (``jina5.data.manifest.record_manifest``): a fresh run starts it, a
resumed run checks its data against the newest start and appends, never writes over it; changed data is
refused naming the datasets, old vs new rows and hash. (The whole path, with real training processes:
tests/e2e/test_changed_data.py.)"""

from __future__ import annotations

import json
import logging

import pytest

from jina5.data.manifest import DataChangedError, data_changes, manifest_fingerprint, record_manifest


def manifest(**datasets: tuple[int, str]) -> dict:
    """A manifest as rank 0 writes it, reduced to what the fingerprint reads."""
    entries = [
        {"name": n, "rows_rank0": r, "rows_sha1_rank0": h, "source": f"{n}.jsonl"}
        for n, (r, h) in datasets.items()
    ]
    return {"world_size": 1, "seed": 0, "datasets": entries}


OLD = manifest(bbc=(64, "b" * 40), mine=(24, "0123456789ab" + "0" * 28))
NEW = manifest(bbc=(64, "b" * 40), mine=(23, "fedcba987654" + "f" * 28))


def read(path) -> dict:
    return json.loads(path.read_text())


def test_a_fresh_run_starts_the_history_and_a_resumed_one_appends(tmp_path):
    path = tmp_path / "data_manifest.json"
    record_manifest(path, OLD, None, accept_changed=False)
    assert read(path)["history"] == [{"began_at_step": 0, "datasets": manifest_fingerprint(OLD)}]
    assert {k: v for k, v in read(path).items() if k != "history"} == OLD
    record_manifest(path, OLD, 6, accept_changed=False)  # resumed at step 6 on the same data
    assert [h["began_at_step"] for h in read(path)["history"]] == [0, 6]
    record_manifest(path, NEW, None, accept_changed=False)  # retrained in place from step 0: a new history
    assert read(path)["history"] == [{"began_at_step": 0, "datasets": manifest_fingerprint(NEW)}]


def test_changed_data_is_refused_naming_the_dataset_and_the_file_kept(tmp_path):
    path = tmp_path / "data_manifest.json"
    record_manifest(path, OLD, None, accept_changed=False)
    before = path.read_text()
    with pytest.raises(DataChangedError) as err:
        record_manifest(path, NEW, 6, accept_changed=False)
    message = str(err.value)
    assert "mine: rows 24 -> 23, sha1 0123456789ab -> fedcba987654" in message and "bbc" not in message
    assert "holds an interrupted run" in message and "the data of step 0 on" in message
    assert "run_name='${experiment_name}-newdata-seed${seed}'" in message
    assert "accept_changed_data=true" in message
    assert path.read_text() == before


def test_accepted_changed_data_is_appended_with_both_fingerprints(tmp_path, caplog):
    path = tmp_path / "data_manifest.json"
    record_manifest(path, OLD, None, accept_changed=False)
    with caplog.at_level(logging.WARNING, logger="jina5.data.manifest"):
        record_manifest(path, NEW, 6, accept_changed=True)
    assert "resuming at step 6 on changed data" in caplog.text and "mine: rows 24 -> 23" in caplog.text
    old, new = read(path)["history"]
    assert (old["began_at_step"], old["datasets"]) == (0, manifest_fingerprint(OLD))
    assert (new["began_at_step"], new["datasets"]) == (6, manifest_fingerprint(NEW))
    with pytest.raises(DataChangedError, match="the data of step 6 on"):  # the newest start is the reference
        record_manifest(path, OLD, 8, accept_changed=False)


def test_a_manifest_from_before_histories_is_its_own_first_start(tmp_path, caplog):
    path = tmp_path / "data_manifest.json"
    path.write_text(json.dumps(OLD))  # written by an earlier version: no history
    with pytest.raises(DataChangedError, match="mine: rows 24 -> 23"):
        record_manifest(path, NEW, 6, accept_changed=False)
    record_manifest(path, OLD, 6, accept_changed=False)
    assert [h["began_at_step"] for h in read(path)["history"]] == [0, 6]
    missing = tmp_path / "none" / "data_manifest.json"
    with caplog.at_level(logging.WARNING, logger="jina5.data.manifest"):
        record_manifest(missing, OLD, 6, accept_changed=False)  # resumed without one: cannot be checked
    assert "cannot be checked" in caplog.text and read(missing)["history"][0]["began_at_step"] == 6


def test_data_changes_names_datasets_added_or_gone():
    old, new = (
        manifest_fingerprint(OLD),
        manifest_fingerprint(manifest(bbc=(64, "b" * 40), extra=(5, "e" * 40))),
    )
    assert data_changes(old, old) == []
    assert data_changes(old, new) == ["mine: trained on -> absent", "extra: absent -> new"]
