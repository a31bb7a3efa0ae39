"""No lost progress: last.ckpt on a step cadence and on SIGTERM / Ctrl-C, atomic checkpoint writes, a named
error for an unreadable checkpoint, one live process per run directory (real processes, SIGKILL)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import LossRecorder, run_cfg, wait_paused

from jina5.runs.checkpoints import AtomicCheckpointIO, CheckpointReadError, atomic_save, checkpoint_step
from jina5.runs.lock import RunLock, RunLockedError
from jina5.train import train

CHILD = Path(__file__).resolve().parents[2] / "e2e" / "train_child.py"  # a real training process
RUN = "default-seed0"
# 14 steps; the dev check every 10 steps and the cadence every 3 never coincide before step 14
COMMON = ("trainer.max_steps=14", "trainer.val_check_interval=10", "trainer.log_every_n_steps=1")


def start_child(root: Path, pause_step: int, *overrides: str) -> subprocess.Popen:
    root.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(root), str(pause_step), *COMMON, *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(child: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, _ = child.communicate(timeout=timeout)
    return child.returncode, out


def child_losses(root: Path) -> dict[int, float]:
    lines = (root / "losses.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory) -> dict[int, float]:
    """The loss of every step of the same run, never interrupted (in this process)."""
    recorder = LossRecorder()
    train(run_cfg(tmp_path_factory.mktemp("unbroken"), *COMMON), callbacks=[recorder])
    return recorder.losses


def resume_in_process(root: Path, *overrides: str) -> LossRecorder:
    recorder = LossRecorder()
    summary = train(run_cfg(root, *COMMON, *overrides), callbacks=[recorder])
    assert summary["steps"] == 14
    return recorder


def test_sigkill_between_checkpoints_redoes_at_most_one_cadence(tmp_path, unbroken, caplog):
    child = start_child(tmp_path, 8, "callbacks.last_checkpoint.every_n_steps=3")
    wait_paused(child, tmp_path)
    child.kill()  # SIGKILL: no handler runs
    child.wait()
    ckpt = tmp_path / "runs" / RUN / "checkpoints" / "last.ckpt"
    assert checkpoint_step(ckpt) == 6  # steps 7 and 8 are lost, no more (before: no last.ckpt before step 10)
    assert not list(ckpt.parent.glob(".*tmp*"))
    with caplog.at_level(logging.WARNING, logger="jina5.runs.lock"):
        resumed = resume_in_process(tmp_path, "callbacks.last_checkpoint.every_n_steps=3")
    assert "taking over the lock of process" in caplog.text  # the killed process's lock file
    assert sorted(resumed.losses) == list(range(7, 15))
    for step, loss in resumed.losses.items():  # the resumed run repeats the unbroken one
        assert loss == pytest.approx(unbroken[step], rel=1e-5), step
    for step in range(1, 9):
        assert child_losses(tmp_path)[step] == pytest.approx(unbroken[step], rel=1e-5), step


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_last_ckpt_at_the_step_and_the_rerun_resumes_there(tmp_path, unbroken, signum):
    child = start_child(tmp_path, 5)  # default cadence: the dev check, at step 10
    wait_paused(child, tmp_path)
    child.send_signal(signum)
    (tmp_path / "go").write_text("")
    rc, out = finish(child)
    assert rc == 128 + signum, out
    assert f"{signal.Signals(signum).name} stopped training after step 5" in out
    run_dir = tmp_path / "runs" / RUN
    assert checkpoint_step(run_dir / "checkpoints" / "last.ckpt") == 5
    assert not (run_dir / "done.json").exists()
    resumed = resume_in_process(tmp_path)
    assert sorted(resumed.losses) == list(range(6, 15))
    for step, loss in resumed.losses.items():
        assert loss == pytest.approx(unbroken[step], rel=1e-5), step


def test_default_cadence_saves_at_every_dev_check_even_without_a_new_best(tmp_path, monkeypatch):
    from lightning.pytorch.callbacks import ModelCheckpoint

    saves = []
    monkeypatch.setattr(ModelCheckpoint, "check_monitor_top_k", lambda self, trainer, current=None: False)
    real_save = torch.save
    monkeypatch.setattr(
        torch, "save", lambda obj, f, *a, **k: (saves.append(obj["global_step"]), real_save(obj, f))
    )
    train(run_cfg(tmp_path, "trainer.max_steps=7", "trainer.val_check_interval=2"))
    assert saves == [2, 4, 6, 7]  # every dev check, then the end; no best is ever saved


def test_second_process_on_a_run_dir_is_refused_and_the_first_is_intact(tmp_path):
    child = start_child(tmp_path, 3)
    wait_paused(child, tmp_path)
    with pytest.raises(RunLockedError, match=rf"in use by process {child.pid} on "):
        train(run_cfg(tmp_path, *COMMON))
    (tmp_path / "go").write_text("")
    rc, out = finish(child)
    assert rc == 0, out
    run_dir = tmp_path / "runs" / RUN
    assert json.loads((run_dir / "done.json").read_text())["steps"] == 14
    metrics = pd.read_csv(run_dir / "logs" / "metrics.csv")
    assert metrics.dropna(subset=["train/loss"])["step"].tolist() == list(range(14))
    assert checkpoint_step(run_dir / "checkpoints" / "last.ckpt") == 14
    assert (run_dir / "run.lock").read_text() == ""  # released


def test_run_lock_is_exclusive_and_released(tmp_path):
    with RunLock(tmp_path):
        holder = json.loads((tmp_path / "run.lock").read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"), RunLock(tmp_path):
            pass
    with RunLock(tmp_path):  # released: taken again
        pass
    with RunLock(tmp_path, enabled=False), RunLock(tmp_path):  # ranks > 0 do not lock
        pass


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_an_unreadable_last_ckpt_is_named_with_the_way_out(tmp_path, damage):
    cfg = run_cfg(tmp_path, "trainer.max_steps=4", "trainer.val_check_interval=2")
    train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    raw = ckpt.read_bytes()
    ckpt.write_bytes(
        {"truncate": raw[: len(raw) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}[damage]
    )
    best = sorted(ckpt.parent.glob("best-step*.ckpt"))
    assert best
    with pytest.raises(CheckpointReadError) as err:
        train(run_cfg(tmp_path, "trainer.max_steps=8", "trainer.val_check_interval=2"))  # extend: resume
    message = str(err.value)
    assert str(ckpt) in message and "truncated or corrupt" in message and "delete it" in message
    assert f"ckpt_path={best[-1]} (step " in message  # an earlier checkpoint to resume from
    best[-1].write_bytes(b"")  # no readable checkpoint left: start over is the only way out
    with pytest.raises(CheckpointReadError, match=r"start over from step 0$") as err:
        train(run_cfg(tmp_path, "trainer.max_steps=8", "trainer.val_check_interval=2"))
    if damage == "truncate":  # the advice, followed once (a training run): delete it, rerun
        Path(str(err.value).split(": cannot be read", 1)[0]).unlink()
        done = train(run_cfg(tmp_path, "trainer.max_steps=8", "trainer.val_check_interval=2"))
        assert done["steps"] == 8


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_save({"global_step": 3}, path)
    before = path.read_bytes()

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_save({"global_step": 4}, path)
    assert path.read_bytes() == before and checkpoint_step(path) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def save_as_if_on_gpu0(obj: dict, path: Path, monkeypatch) -> None:
    """``torch.save`` of ``obj`` with every storage tagged ``cuda:0``, as a checkpoint written on GPU 0."""
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        atomic_save(obj, path)


def test_checkpoint_io_loads_onto_the_cpu_by_default(tmp_path, monkeypatch):
    """Lightning's strategies call ``load_checkpoint(path)`` without map_location: every rank must load
    onto its CPU (Lightning's TorchCheckpointIO default), not onto the device the tensors were saved
    from (GPU 0 for every rank)."""
    path = tmp_path / "last.ckpt"
    save_as_if_on_gpu0({"w": torch.arange(3.0), "global_step": 5}, path, monkeypatch)
    seen = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k["map_location"]) or real_load(*a, **k))
    loaded = AtomicCheckpointIO().load_checkpoint(path)
    assert seen == ["cpu"]
    assert loaded["w"].device == torch.device("cpu") and loaded["w"].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a host without CUDA")
def test_a_gpu_checkpoint_on_a_cpu_host_is_not_called_corrupt(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_as_if_on_gpu0({"w": torch.arange(3.0), "global_step": 5}, path, monkeypatch)
    with pytest.raises(RuntimeError) as err:
        AtomicCheckpointIO().load_checkpoint(path, map_location="cuda:0")
    message = str(err.value)
    assert not isinstance(err.value, CheckpointReadError)
    assert "corrupt" not in message and "delete it" not in message
    assert str(path) in message and "map_location='cuda:0'" in message and "is intact" in message
    assert path.exists() and checkpoint_step(path) == 5  # readable all along


def test_ctrl_c_flag_is_agreed_every_n_steps_not_every_step(monkeypatch):
    """Under several ranks the Ctrl-C flag needs a collective (every rank saves): once every
    ``signal_check_every_n_steps`` steps and at every dev check, not at every step (a host sync each)."""
    from types import SimpleNamespace

    from jina5.runs.checkpoints import LastCheckpoint

    agreed = []
    strategy = SimpleNamespace(reduce_boolean_decision=lambda flag, all=True: agreed.append(step) or flag)
    trainer = SimpleNamespace(world_size=2, global_step=0, strategy=strategy)
    monkeypatch.setattr(LastCheckpoint, "_dev_check_due", staticmethod(lambda trainer: False))
    callback = LastCheckpoint("unused", every_n_steps=1000)
    for step in range(1, 26):
        trainer.global_step = step
        callback.on_train_batch_end(trainer, None)
    assert agreed == [10, 20] and callback.signal_check_every_n_steps == 10
    callback._sigint = True  # Ctrl-C on this rank: the others learn it at the next agreed step
    saved = []
    monkeypatch.setattr(callback, "save", lambda trainer, why: saved.append((trainer.global_step, why)))
    for step in range(26, 30):
        trainer.global_step = step
        callback.on_train_batch_end(trainer, None)
    assert saved == []
    trainer.global_step = step = 30
    with pytest.raises(SystemExit) as stop:
        callback.on_train_batch_end(trainer, None)
    assert stop.value.code == 130 and saved == [(30, "Ctrl-C")] and agreed == [10, 20, 30]
