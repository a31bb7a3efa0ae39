"""Results store: round trip, filters, validation, malformed and torn lines, concurrent appenders, run
ids and run configs."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import re
import subprocess
from pathlib import Path

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


@pytest.mark.parametrize(("field", "bad"), [("value", "0.6x"), ("value", None), ("dim", "64"), ("dim", 64.5)])
def test_a_non_number_in_a_line_is_named_with_file_and_line_and_deleting_it_reads_again(tmp_path, field, bad):
    """Issue 23, item 6: a main-metric value "0.6x" in the store was read without a word, and the tables
    then failed with pandas' "TypeError: agg function failed", naming no file or line. The read (the
    report's too) now names file:line and the way out; following it (deleting the line) reads the rest."""
    from jina5.report.aggregate import stored_rows

    path = tmp_path / "r.jsonl"
    store = ResultsStore(path)
    store.append(_records({(64, "float32"): 0.5}), _run("a"))
    store.append(_records({(64, "float32"): 0.6}), _run("b"))
    good, line = path.read_text().splitlines()
    row = {**json.loads(line), field: bad}
    path.write_text(f"{good}\n{json.dumps(row)}\n")
    what = f"retrieval/ndcg@10 value {bad!r} is not a number" if field == "value" else f"dim {bad!r} is not"
    for read in (store.read, lambda: stored_rows(ResultsStore(path))):
        with pytest.raises(ValueError, match=re.escape(f"{path}:2: {what}")) as err:
            read()
        assert str(err.value).endswith("; correct the line or delete it")
    path.write_text(f"{good}\n")
    assert store.read()["value"].tolist() == [0.5]


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


# ------------------------------------------------------------------------------- complete or absent
def _task(task: str, dataset: str, value: float) -> list[dict]:
    """One task's records as the suite writes them (with ``task_name``)."""
    return [
        {**r, "task_name": f"{task}/{dataset}"} for r in _records({(64, "float32"): value}, dataset, task)
    ]


def test_a_run_without_its_completion_line_is_left_out_with_a_warning_until_it_completes(tmp_path, caplog):
    """Started with three tasks, one stored: every read leaves the run out and warns once, naming the run,
    the model and the two lacking tasks; after the completion line the run reads back whole."""
    store = ResultsStore(tmp_path / "results.jsonl")
    run = _run("half")
    store.start_run(run, ["retrieval/news", "sts/lee", "clustering/bbc"])
    store.append(_task("retrieval", "news", 0.1), run)
    store.append(_task("retrieval", "news", 0.6), _run("whole"))  # a run without markers: complete
    with caplog.at_level("WARNING", logger="jina5.eval.store"):
        assert store.read()["run_id"].tolist() == ["whole"]
        assert store.read(task="retrieval")["run_id"].tolist() == ["whole"]
    (warning,) = [r.getMessage() for r in caplog.records]  # once per run and store object
    assert "run half (experiment gor_ablation, model student) is a partial evaluation" in warning
    assert "1 task(s) stored, lacking 2: sts/lee, clustering/bbc" in warning
    assert warning.startswith(f"{store.path}: ") and "killed or failed" in warning
    assert store.read(include_partial=["half"])["run_id"].tolist() == ["half", "whole"]
    partial = store.partial_runs()["half"]
    assert (partial.stored, partial.seed, partial.resumed_by) == (("retrieval/news",), 3, None)

    for task, dataset in (("sts", "lee"), ("clustering", "bbc")):
        store.append(_task(task, dataset, 0.5), run)
    assert store.read()["run_id"].tolist() == ["whole"]  # every task stored, but not marked complete
    store.complete_run(run)
    assert store.partial_runs() == {}
    assert store.read()["run_id"].tolist() == ["half", "whole", "half", "half"]
    lines = [json.loads(line) for line in store.runs_path.read_text().splitlines()]
    assert [(r["run_id"], r.get("evaluation", {}).get("status")) for r in lines] == [
        ("half", "started"),
        ("whole", None),
        ("half", "complete"),
    ]


def test_a_store_written_before_completion_lines_is_read_by_its_tasks(tmp_path, caplog):
    """No run has markers. Runs with the same evaluation settings hold the same tasks: all complete. One
    of them that lacks a task the others have (killed by older code) is left out, named; a run with other
    settings, and one without an evaluation config (training records), are judged on their own."""
    store = ResultsStore(tmp_path / "results.jsonl")
    suite = {"eval": {"suite": "default", "dims": [64]}}
    tasks = [("retrieval", "news"), ("sts", "lee"), ("clustering", "bbc")]
    for run_id, done in (("a", 3), ("b", 3), ("killed", 1)):
        for task, dataset in tasks[:done]:
            store.append(_task(task, dataset, 0.5), _run(run_id, config=suite))
    narrow = {"eval": {"suite": "default", "variant": "retrieval", "dims": [64]}}
    store.append(_task("retrieval", "news", 0.7), _run("narrow", config=narrow))
    store.append(_task("retrieval", "news", 0.7), _run("curves", config={"lr": 1}))
    with caplog.at_level("WARNING", logger="jina5.eval.store"):
        shown = store.read()
    assert list(dict.fromkeys(shown["run_id"])) == ["a", "b", "narrow", "curves"]
    assert "run killed (experiment gor_ablation, model student) is a partial evaluation" in caplog.text
    assert "lacks tasks that other runs with its evaluation settings have" in caplog.text
    assert "lacking 2: clustering/bbc/en, sts/lee/en" in caplog.text
    assert store.partial_runs()["killed"].legacy


def test_check_writable_names_the_store_and_creates_nothing_but_its_folder(tmp_path):
    store = ResultsStore(tmp_path / "new" / "results.jsonl")
    store.check_writable()
    assert list((tmp_path / "new").iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(PermissionError, match=r"results store .*file/results.jsonl cannot be written"):
        ResultsStore(tmp_path / "file" / "results.jsonl").check_writable()


# ------------------------------------------------------------------------------- torn lines, concurrency
TORN = b'{"run_id": "torn", "experiment": "x", "val'  # a line cut short by a crash: no newline, not JSON


def _torn_entries(side) -> list[bytes]:
    """The quarantined tails in a side file (each after its ``# ...`` header line)."""
    text = side.read_bytes()
    return [part.split(b"\n", 1)[1].removesuffix(b"\n") for part in text.split(b"# ")[1:]]


def test_torn_last_line_is_quarantined_and_appends_go_on(tmp_path, caplog):
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    store.append(_records({(64, "float32"): 0.5, (32, "float32"): 0.4}), _run("a"))
    complete = path.read_bytes()
    with path.open("ab") as f:
        f.write(TORN)

    # a read keeps both complete lines, moves the torn one (line 3) to the side file and says where
    with caplog.at_level("WARNING", logger="jina5.eval.jsonl_file"):
        assert store.read()["value"].tolist() == [0.5, 0.4]
    side = tmp_path / "results.jsonl.torn"
    assert f"{path}:3: torn final line" in caplog.text and str(side) in caplog.text
    assert _torn_entries(side) == [TORN] and path.read_bytes() == complete
    assert f"line 3 of results.jsonl, bytes {len(complete)}..{len(complete) + len(TORN)}" in side.read_text()

    # the next append starts on a line of its own; nothing complete is lost
    store.append(_records({(64, "float32"): 0.6}), _run("b"))
    assert store.read()["value"].tolist() == [0.5, 0.4, 0.6]

    # an append (no read before it) quarantines too; the side file is appended to, never overwritten
    caplog.clear()
    for p in (path, store.runs_path):
        with p.open("ab") as f:
            f.write(TORN)
    with caplog.at_level("WARNING", logger="jina5.eval.jsonl_file"):
        ResultsStore(path).append(_records({(64, "float32"): 0.7}), _run("c"))
    assert f"{path}:4: torn final line" in caplog.text
    assert f"{store.runs_path}:3: torn final line" in caplog.text
    assert _torn_entries(side) == [TORN, TORN]
    assert _torn_entries(tmp_path / "results.runs.jsonl.torn") == [TORN]
    df = store.read()
    assert df["value"].tolist() == [0.5, 0.4, 0.6, 0.7]
    assert df["run_id"].tolist() == ["a", "a", "b", "c"] and df["config"].notna().all()


def test_torn_line_of_a_read_only_store_is_skipped_with_a_warning(tmp_path, caplog, monkeypatch):
    path = tmp_path / "results.jsonl"
    ResultsStore(path).append(_records({(64, "float32"): 0.5}), _run("a"))
    with path.open("ab") as f:
        f.write(TORN)
    before = path.read_bytes()
    real_open = os.open

    def read_only(file, flags, *args):  # the file mode would not stop root, so refuse writes here
        if Path(file) == path and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with caplog.at_level("WARNING", logger="jina5.eval.jsonl_file"):
        assert ResultsStore(path).read()["value"].tolist() == [0.5]
    monkeypatch.undo()
    assert f"{path}:2: torn final line (no newline, not JSON) skipped" in caplog.text
    assert path.read_bytes() == before  # untouched; the next append quarantines it
    ResultsStore(path).append(_records({(64, "float32"): 0.6}), _run("a"))
    assert ResultsStore(path).read()["value"].tolist() == [0.5, 0.6]


def test_final_json_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    store.append(_records({(64, "float32"): 0.5, (32, "float32"): 0.4}), _run("a"))
    path.write_bytes(path.read_bytes().removesuffix(b"\n"))  # a hand edit dropped the last newline
    assert store.read()["value"].tolist() == [0.5, 0.4]
    store.append(_records({(64, "float32"): 0.6}), _run("a"))
    assert store.read()["value"].tolist() == [0.5, 0.4, 0.6]
    assert path.read_bytes().count(b"\n") == 3 and not (tmp_path / "results.jsonl.torn").exists()


def test_failed_write_leaves_no_partial_batch(tmp_path, monkeypatch):
    """A full disk mid-batch: the part already written is truncated away (whole lines or nothing)."""
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    store.append(_records({(64, "float32"): 0.5}), _run("a"))
    before = path.read_bytes()

    real_write, inode = os.write, path.stat().st_ino

    def half_then_full(fd, data):  # the disk fills up halfway through the first write to the store
        if os.fstat(fd).st_ino != inode:
            return real_write(fd, data)
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        store.append(_records({(64, "float32"): 0.6, (32, "float32"): 0.4}), _run("a"))
    assert path.read_bytes() == before
    monkeypatch.undo()
    store.append(_records({(64, "float32"): 0.7}), _run("a"))
    assert store.read()["value"].tolist() == [0.5, 0.7]


BATCHES, BATCH_LINES, WRITERS = 50, 8, 4


def _append_batches(path: str, writer: int) -> None:
    """One concurrent appender: BATCHES appends of BATCH_LINES lines (~1 KB each) to ``path``."""
    store = ResultsStore(path)
    for batch in range(BATCHES):
        recs = _records({(d, "float32"): 0.5 for d in range(1, BATCH_LINES + 1)})
        store.append(
            [{**r, "writer": writer, "batch": batch, "pad": "x" * 1000} for r in recs], _run(f"w{writer}")
        )


def test_concurrent_appenders_write_whole_batches(tmp_path):
    """Writers in separate processes, starting on torn final lines in both files: the torn lines are
    quarantined exactly once, every line parses, the count is exact and each batch is contiguous."""
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    store.append(_records({(64, "float32"): 0.5}), _run("first"))
    for p in (path, store.runs_path):
        with p.open("ab") as f:
            f.write(TORN)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_batches, args=(str(path), w)) for w in range(WRITERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    assert [proc.exitcode for proc in procs] == [0] * WRITERS

    lines = [json.loads(line) for line in path.read_bytes().split(b"\n")[:-1]]  # each parses
    assert len(lines) == 1 + WRITERS * BATCHES * BATCH_LINES
    batches = [(r["writer"], r["batch"]) for r in lines[1:]]
    runs = [batches[i] for i in range(0, len(batches), BATCH_LINES)]
    assert sorted(runs) == sorted((w, b) for w in range(WRITERS) for b in range(BATCHES))
    assert batches == [b for b in runs for _ in range(BATCH_LINES)]  # no batch is split
    assert _torn_entries(tmp_path / "results.jsonl.torn") == [TORN]
    assert _torn_entries(tmp_path / "results.runs.jsonl.torn") == [TORN]
    assert len(store.read()) == len(lines)
    assert sorted(json.loads(x)["run_id"] for x in store.runs_path.read_text().splitlines()) == sorted(
        ["first"] + [f"w{w}" for w in range(WRITERS)]
    )
