"""Data that changed behind an unchanged path is never reused silently (issue 23, item 3): real training
processes (``python -m jina5.train`` on toy models) whose data file is rewritten between runs.

A finished run is refused rather than skipped as done, an interrupted one rather than resumed on the new
data, naming the changed dataset with its old and new rows and hash; ``accept_changed_data=true`` (the
error's advice) keeps the finished run, or resumes the interrupted one with both fingerprints in
``data_manifest.json``'s history."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import SMALL_DATA, TINY, TINY_TEACHER

from jina5.data.manifest import MANIFEST_FILE

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).resolve().parent / "train_child.py"  # a training process that pauses at a step
RUN = "default-seed0"
QUESTIONS = [f"question {i} about topic {i % 5}" for i in range(24)]


def write_pairs(path: Path, answer: str) -> None:
    """24 (q, d) rows; ``answer`` changes every document, not the row count."""
    rows = [{"q": q, "d": f"{answer} {i}: {q.upper()} is answered here."} for i, q in enumerate(QUESTIONS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def overrides(data: Path, *extra: str) -> list[str]:
    mine = (
        f"{{source: '{data}', columns: {{q: query, d: document}}, task: retrieval, batch_size: 8, "
        "query_max_length: 16, document_max_length: 32}"
    )
    steps = ["trainer.max_steps=4", "trainer.val_check_interval=2", "export=false"]
    return [f"+data.datasets.mine={mine}", *steps, *extra]


def env(root: Path) -> dict[str, str]:
    """A private cache, and this checkout's jina5 first: the pausing child is a script, whose sys.path
    starts at its own folder, where an installed jina5 may be another checkout's."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "JINA5_CACHE": str(root / "cache")}


def train_cli(root: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    """``python -m jina5.train`` with the toy models and mix of tests/helpers.py's ``run_cfg``."""
    args = [*TINY["bert"], *TINY_TEACHER, *SMALL_DATA, f"paths.output_root={root}"]
    args += ["trainer.enable_progress_bar=false", *overrides(data, *extra)]
    return subprocess.run(
        [sys.executable, "-m", "jina5.train", *args], cwd=ROOT, env=env(root), capture_output=True, text=True
    )


def error_of(proc: subprocess.CompletedProcess) -> str:
    """The DataChangedError a training process failed with: its message, to the end of its output."""
    refused = proc.returncode != 0 and "DataChangedError" in proc.stderr
    assert refused, f"not refused (exit status {proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stderr[proc.stderr.rindex("DataChangedError") :]


def manifest(root: Path) -> dict:
    return json.loads((root / "runs" / RUN / MANIFEST_FILE).read_text())


def sha1_of(root: Path, name: str) -> str:
    """The content hash the manifest recorded for dataset ``name`` (the newest start's)."""
    return next(d for d in manifest(root)["datasets"] if d["name"] == name)["rows_sha1_rank0"]


def test_a_finished_run_on_changed_data_is_refused_not_skipped(tmp_path):
    data = tmp_path / "pairs.jsonl"
    write_pairs(data, "old")
    first = train_cli(tmp_path, data)
    assert first.returncode == 0, first.stderr[-3000:]
    done, old_sha1 = (tmp_path / "runs" / RUN / "done.json").read_text(), sha1_of(tmp_path, "mine")
    assert train_cli(tmp_path, data).returncode == 0  # the same data: skipped as done
    write_pairs(data, "new")
    message = error_of(train_cli(tmp_path, data))
    assert "is a finished run" in message
    assert f"mine: rows 24 -> 24, sha1 {old_sha1[:12]} -> " in message  # named, old vs new
    assert "bbc:" not in message and "lee_background:" not in message  # the unchanged ones are not
    assert "run_name='${experiment_name}-newdata-seed${seed}'" in message
    assert "accept_changed_data=true" in message
    # the advice, followed: the finished run is kept as it is, and says so
    kept = train_cli(tmp_path, data, "accept_changed_data=true")
    assert kept.returncode == 0, kept.stderr[-3000:]
    assert "keeping the finished run" in kept.stdout and "mine: rows 24 -> 24" in kept.stdout  # the log
    assert (tmp_path / "runs" / RUN / "done.json").read_text() == done
    (trained,) = manifest(tmp_path)["history"]
    assert trained["began_at_step"] == 0 and set(trained["datasets"]) == {"bbc", "lee_background", "mine"}
    assert trained["datasets"]["mine"] == {"rows": 24, "sha1": old_sha1}


def test_an_interrupted_run_on_changed_data_is_refused_and_resumes_on_request(tmp_path):
    data = tmp_path / "pairs.jsonl"
    write_pairs(data, "old")
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(tmp_path), "2", *overrides(data)],
        env=env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (tmp_path / "paused").exists():  # at the end of step 2 (tests/e2e/train_child.py)
        assert child.poll() is None, child.stdout.read()
        assert time.monotonic() < deadline, "the training process never reached step 2"
        time.sleep(0.1)
    child.send_signal(signal.SIGTERM)  # last.ckpt at step 2, no done.json
    (tmp_path / "go").write_text("")
    out, _ = child.communicate(timeout=300)
    assert child.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert not (tmp_path / "runs" / RUN / "done.json").exists()
    before, old_sha1 = manifest(tmp_path), sha1_of(tmp_path, "mine")
    write_pairs(data, "new")
    message = error_of(train_cli(tmp_path, data))
    assert "holds an interrupted run" in message and "bbc:" not in message
    assert f"mine: rows 24 -> 24, sha1 {old_sha1[:12]} -> " in message
    assert manifest(tmp_path) == before  # left as it was
    resumed = train_cli(tmp_path, data, "accept_changed_data=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((tmp_path / "runs" / RUN / "done.json").read_text())["steps"] == 4
    first, second = manifest(tmp_path)["history"]  # both fingerprints, with the step each began at
    assert first == before["history"][0] and first["datasets"]["mine"]["sha1"] == old_sha1
    assert second["began_at_step"] == 2 and second["datasets"]["mine"]["sha1"] == sha1_of(tmp_path, "mine")
    assert second["datasets"]["mine"]["sha1"] != old_sha1
    assert second["datasets"]["bbc"] == first["datasets"]["bbc"]
