"""Results store: round trip, filters, validation, malformed lines, run ids and run configs."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from jina5.eval import store as store_mod
from jina5.eval.metrics import relative_drops
from jina5.eval.store import COLUMNS, ResultsStore


def _run(run_id, model="student", **extra):
    cfg = {"objective": {"weights": {"distill": 1, "gor": 0}}, "seed": 3, "lr": 1e-4}
    return {"run_id": run_id, "experiment": "gor_ablation", "seed": 3, "model": model, "config": cfg, **extra}


def _records(values, dataset="toy", task="retrieval"):
    return [
        {
            "task": task,
            "dataset": dataset,
            "language": "en",
            "split": "test",
            "metric": "ndcg@10",
            "dim": dim,
            "precision": prec,
            "value": v,
        }
        for (dim, prec), v in values.items()
    ]


def test_round_trip_two_runs_with_filters(tmp_path):
    store = ResultsStore(tmp_path / "sub" / "results.jsonl")
    a = {(64, "float32"): 0.123456789012345, (64, "binary"): 0.1, (32, "float32"): 0.11}
    b = {(64, "float32"): 0.5, (64, "binary"): 0.25}
    assert store.append(relative_drops(_records(a)), _run("run-a")) == 3
    assert (
        store.append(
            _records(b, dataset="other"), _run("run-b", git_commit="abc123", model_fingerprint="fp-b")
        )
        == 2
    )

    df = store.read()
    assert len(df) == 5 and list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert df["value"].tolist() == [0.123456789012345, 0.1, 0.11, 0.5, 0.25]  # exact floats
    assert df["dim"].tolist() == [64, 64, 32, 64, 64]
    assert df.loc[0, "config"] == _run("x")["config"]
    assert df.loc[0, "model_fingerprint"] == "student" and df.loc[3, "model_fingerprint"] == "fp-b"
    assert df.loc[3, "git_commit"] == "abc123"
    assert df.loc[0, "time"] <= df.loc[3, "time"]
    assert df.loc[1, "relative_drop"] == pytest.approx((0.123456789012345 - 0.1) / 0.123456789012345)

    only_b = store.read(run_id="run-b")
    assert only_b["dataset"].unique().tolist() == ["other"] and len(only_b) == 2
    binary = store.read(precision=["binary"], dim=64)
    assert binary["value"].tolist() == [0.1, 0.25]
    assert store.read(run_id="nope").empty
    with pytest.raises(ValueError, match="unknown results column 'nope'"):
        store.read(nope=1)


def test_missing_required_field_names_it_and_writes_nothing(tmp_path):
    store = ResultsStore(tmp_path / "r.jsonl")
    recs = _records({(64, "float32"): 0.5})
    del recs[0]["dataset"]
    with pytest.raises(ValueError, match="dataset"):
        store.append(recs, _run("r"))
    run = _run("r")
    del run["experiment"]
    with pytest.raises(ValueError, match="experiment"):
        store.append(_records({(64, "float32"): 0.5}), run)
    assert not (tmp_path / "r.jsonl").exists()
    # a field may come from the run instead of the record
    assert store.append(recs, _run("r", dataset="from-run")) == 1
    assert store.read()["dataset"].tolist() == ["from-run"]
    # a record's own field wins over the run's
    store.append(_records({(64, "float32"): 0.5}, dataset="own"), _run("r2", dataset="from-run"))
    assert store.read(run_id="r2")["dataset"].tolist() == ["own"]


def test_malformed_line_raises_with_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    store = ResultsStore(path)
    store.append(_records({(64, "float32"): 0.5}), _run("a"))
    with path.open("a") as f:
        f.write('{"run_id": "torn", "val\n')
    store.append(_records({(64, "float32"): 0.6}), _run("b"))
    with pytest.raises(ValueError, match=rf"{path}:2: malformed"):
        store.read()
    lines = path.read_text().splitlines()
    row = json.loads(lines[0])
    del row["metric"]
    path.write_text(lines[0] + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:2: missing required field\(s\) \['metric'\]"):
        store.read()


def test_empty_store_reads_empty_frame(tmp_path):
    df = ResultsStore(tmp_path / "none.jsonl").read()
    assert df.empty and list(df.columns) == list(COLUMNS)


def test_new_run_id_names_experiment_seed_and_utc_time():
    assert re.fullmatch(r"combined-seed0-\d{8}T\d{12}Z", store_mod.new_run_id("combined", 0))
    assert re.fullmatch(r"a_b-\d{8}T\d{12}Z", store_mod.new_run_id("/a b/", None))
    assert store_mod.new_run_id("x" * 100, 1).startswith("x" * 60 + "-seed1-")


def test_run_config_is_a_plain_dict():
    from omegaconf import OmegaConf

    assert store_mod.run_config(OmegaConf.create({"a": {"b": "${c}"}, "c": 1})) == {"a": {"b": 1}, "c": 1}
    assert store_mod.run_config(None) == {}
    with pytest.raises(TypeError, match="must be a mapping"):
        store_mod.run_config(["a"])


def test_git_commit_best_effort(monkeypatch):
    store_mod.git_commit.cache_clear()

    def fail(*args, **kwargs):
        raise subprocess.CalledProcessError(128, args[0])

    monkeypatch.setattr(store_mod.subprocess, "run", fail)
    try:
        assert store_mod.git_commit() is None
    finally:
        store_mod.git_commit.cache_clear()


def test_config_is_written_once_per_run_and_joined_back(tmp_path):
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    for task in ("sts", "retrieval", "clustering"):  # the suite appends task by task
        store.append(_records({(64, "float32"): 0.5, (32, "float32"): 0.4}, task=task), _run("a"))
    changed = _run("b")
    changed["config"] = {"lr": 2e-4}
    store.append(_records({(64, "float32"): 0.6}), changed)

    assert store.runs_path == tmp_path / "results.runs.jsonl"
    runs = [json.loads(line) for line in store.runs_path.read_text().splitlines()]
    assert [r["run_id"] for r in runs] == ["a", "b"]
    assert all("config" not in json.loads(line) for line in path.read_text().splitlines())

    df = store.read()
    assert len(df) == 7
    assert all(c == _run("a")["config"] for c in df.loc[df["run_id"] == "a", "config"])
    assert df.loc[df["run_id"] == "b", "config"].tolist() == [{"lr": 2e-4}]
    # a second writer of the same run (another process) re-states the config; the last one wins
    again = _run("a")
    again["config"] = {"lr": 3e-4}
    ResultsStore(path).append(_records({(64, "binary"): 0.3}), again)
    assert all(c == {"lr": 3e-4} for c in store.read(run_id="a")["config"])
    # records that name their own run_id get the run's config too
    own = [{**r, "run_id": "c"} for r in _records({(64, "float32"): 0.1})]
    store.append(own, _run("ignored"))
    assert store.read(run_id="c")["config"].tolist() == [_run("x")["config"]]


def test_legacy_inline_config_and_torn_run_line(tmp_path):
    path = tmp_path / "results.jsonl"
    legacy = {**_run("old"), **_records({(64, "float32"): 0.5})[0]}  # config on the metric line
    path.write_text(json.dumps(legacy) + "\n")
    store = ResultsStore(path)
    store.append(_records({(64, "float32"): 0.7}), _run("new"))
    df = store.read()
    assert df["config"].tolist() == [_run("old")["config"], _run("new")["config"]]
    with store.runs_path.open("a") as f:
        f.write('{"run_id": "torn", "con\n')
    with pytest.raises(ValueError, match=r"results\.runs\.jsonl:2: malformed run line"):
        store.read()
