"""A finished run is skipped without loading its mix when the files it was read from hash as they did
(``jina5.data.manifest.inputs_digest``); where they changed, or cannot be hashed (a hub source), the mix is
loaded and its rows compared (``jina5.runs.data_identity.check_same_data``). The refusal itself, with real
training processes: tests/e2e/test_changed_data.py."""

from __future__ import annotations

import json

import pytest
from helpers import run_cfg
from hydra.utils import instantiate

from jina5.data.datamodule import PairDataModule
from jina5.data.manifest import MANIFEST_FILE, inputs_digest, record_manifest
from jina5.data.pairs import DatasetSpec
from jina5.runs.data_identity import check_same_data


def write_rows(path, answer: str) -> None:
    path.write_text("".join(json.dumps({"q": f"q{i}", "d": f"{answer} {i}"}) + "\n" for i in range(12)))


def test_the_digest_follows_the_bytes_of_local_sources_and_is_none_for_a_hub_id(tmp_path):
    file, folder = tmp_path / "pairs.jsonl", tmp_path / "shards"
    folder.mkdir()
    write_rows(file, "a")
    write_rows(folder / "part-0.jsonl", "a")
    spec = DatasetSpec(name="mine", source=str(file))
    shards = DatasetSpec(name="mine", source=f"hf:{folder}:train")
    first = inputs_digest([spec])
    write_rows(file, "a")  # rewritten with the same bytes
    assert inputs_digest([spec]) == first and len(first) == 40
    write_rows(file, "b")
    assert inputs_digest([spec]) != first
    before = inputs_digest([shards])
    (folder / "part-1.jsonl").write_text("")
    assert before is not None and inputs_digest([shards]) != before
    assert (
        inputs_digest([DatasetSpec(name="hub", source="hf:sentence-transformers/all-nli:pair:train")]) is None
    )
    assert inputs_digest([DatasetSpec(name="bbc")]) == inputs_digest([])  # bundled: the package versions


def test_a_finished_run_on_unchanged_files_is_not_loaded_and_on_changed_files_is(tmp_path, monkeypatch):
    data = tmp_path / "pairs.jsonl"
    write_rows(data, "a")
    mine = f"{{source: '{data}', columns: {{q: query, d: document}}, task: retrieval, batch_size: 4}}"
    cfg = run_cfg(tmp_path, f"+data.datasets.mine={mine}")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    datamodule = instantiate(cfg.data, encoder=None, teacher=None)
    fingerprint = datamodule.fingerprint([s.name for s in datamodule.specs])
    manifest = {"world_size": 1, "datasets": [{"name": n, "rows_rank0": f["rows"], "rows_sha1_rank0": f["sha1"]}
                                              for n, f in fingerprint.items()]}  # fmt: skip
    record_manifest(run_dir / MANIFEST_FILE, manifest, None, False, datamodule.inputs_digest())

    def loaded(*args, **kwargs):
        raise AssertionError("the mix was loaded")

    monkeypatch.setattr(PairDataModule, "load_tables", loaded)
    check_same_data(cfg, run_dir)
    write_rows(data, "b")
    with pytest.raises(AssertionError, match="the mix was loaded"):
        check_same_data(cfg, run_dir)
