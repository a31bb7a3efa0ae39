"""Loggers: csv (default), tensorboard, many (several at once), none; the resolved config as hyperparameters;
the logger-independent curve record (each step once after a crash and resume) that the tables read."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import yaml
from helpers import run_cfg
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from jina5.eval.store import ResultsStore
from jina5.runs.curves import CURVES_FILE, CurveRecord, read_curves
from jina5.runs.loggers import configured_loggers
from jina5.train import build, train

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "experiments"))
import sweep  # noqa: E402

from jina5.report import tables  # noqa: E402

# 4 steps, dev checks after steps 2 and 4 (logged at steps 1 and 3), every step logged
SHORT = (
    "experiment=ablation/combined",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """logger choice -> (run dir, done.json summary, config) of a SHORT run with it (trained once)."""
    runs: dict[str, tuple] = {}

    def get(logger: str) -> tuple[Path, dict, dict]:
        if logger not in runs:
            cfg = run_cfg(tmp_path_factory.mktemp(logger), *SHORT, f"logger={logger}")
            summary = train(cfg)
            runs[logger] = (Path(cfg.paths.output_dir), summary, cfg)
        return runs[logger]

    return get


def tensorboard_hparams(log_dir: Path) -> dict:
    """The hyperparameters of TensorBoard's HPARAMS tab, read back from the event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(log_dir))
    events.Reload()
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in hparams.items()}


def test_tensorboard_is_selectable_and_its_events_hold_the_config(trained):
    run, summary, cfg = trained("tensorboard")
    assert not (run / "logs").exists()  # no CSV logger
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    hparams = tensorboard_hparams(run / "tensorboard")
    assert hparams["optimizer/lr"] == pytest.approx(cfg.optimizer.lr)
    assert hparams["seed"] == 0 and hparams["experiment_name"] == "combined"
    assert hparams["trainer/max_steps"] == 4
    assert yaml.safe_load((run / "tensorboard" / "hparams.yaml").read_text()) == yaml.safe_load(
        (run / "config.yaml").read_text()
    )


def test_many_is_csv_and_tensorboard_each_with_the_config(trained, tmp_path):
    cfg = run_cfg(tmp_path, *SHORT, "logger=many")
    _, _, trainer = build(cfg)
    assert [type(x) for x in trainer.loggers] == [CSVLogger, TensorBoardLogger, CurveRecord]
    run, _, _ = trained("many")
    metrics = pd.read_csv(run / "logs" / "metrics.csv")
    assert metrics.dropna(subset=["train/loss"])["step"].tolist() == [0, 1, 2, 3]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert yaml.safe_load((run / "logs" / "hparams.yaml").read_text()) == config  # the resolved config
    assert tensorboard_hparams(run / "tensorboard")["optimizer/lr"] == pytest.approx(
        config["optimizer"]["lr"]
    )


def test_a_logger_dict_leaves_out_null_entries_and_names_a_bad_one(tmp_path):
    many = run_cfg(tmp_path, *SHORT, "logger=many", "logger.tensorboard=null").logger
    assert [type(x) for x in configured_loggers(many)] == [CSVLogger]
    assert configured_loggers(None) == [] and configured_loggers({}) == []
    with pytest.raises(ValueError, match=r"logger\.mine must be a logger config with a _target_"):
        configured_loggers({"mine": {"save_dir": "x"}})


def test_the_learning_rate_is_logged_once(trained):
    run, _, _ = trained("many")
    names = set(read_curves(run)["name"])
    assert [n for n in names if "lr" in n.split("/")[-1]] == ["train/lr"]
    assert [c for c in pd.read_csv(run / "logs" / "metrics.csv").columns if "lr" in c] == ["train/lr"]


class Crash(L.Callback):
    """Raises at the end of optimizer step ``step``: a crash between two checkpoints."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"crash at step {self.step}")


def test_the_curve_record_holds_each_step_once_after_a_crash_and_resume(tmp_path):
    common = (
        "experiment=ablation/combined",
        "trainer.max_steps=8",
        "trainer.val_check_interval=2",
        "trainer.log_every_n_steps=1",
        "callbacks.last_checkpoint.every_n_steps=3",
    )
    train(run_cfg(tmp_path / "unbroken", *common))
    broken = run_cfg(tmp_path / "broken", *common)
    with pytest.raises(RuntimeError, match="crash at step 5"):
        train(broken, callbacks=[Crash(5)])  # last.ckpt is step 3's
    run = Path(broken.paths.output_dir)
    crashed = read_curves(run)
    # optimizer step 4 (logged at step 3) and its dev check came after last.ckpt: the resume redoes them
    assert crashed[crashed["name"] == "train/loss"]["step"].max() == 3
    assert crashed[crashed["name"] == "val/ndcg@10"]["step"].tolist() == [1, 3]
    assert train(broken)["steps"] == 8  # resumes from step 3
    lines = [json.loads(line) for line in (run / CURVES_FILE).read_text().splitlines()]
    assert len(lines) == len({(r["name"], r["step"]) for r in lines})  # each (metric, step) once
    a, b = read_curves(tmp_path / "unbroken" / "runs" / "combined-seed0"), read_curves(run)
    for name in ("train/loss", "train/lr", "val/ndcg@10"):
        want, got = (df[df["name"] == name].set_index("step")["value"] for df in (a, b))
        assert (
            got.index.tolist() == want.index.tolist() == (list(range(8)) if "train" in name else [1, 3, 5, 7])
        )
        assert got.to_numpy() == pytest.approx(want.to_numpy(), rel=1e-5), name


def test_curve_record_keeps_the_lines_before_the_resumed_step_and_drops_a_torn_one(tmp_path):
    old = [{"step": s, "name": "train/loss", "value": 1.0 / (s + 1)} for s in range(5)]
    (tmp_path / CURVES_FILE).write_text("".join(json.dumps(r) + "\n" for r in old) + '{"step": 5, "na')
    record = CurveRecord(tmp_path, keep_before_step=3)
    record.log_metrics({"train/loss": 0.125, "val/ndcg@10": 0.5}, step=3)
    assert read_curves(tmp_path).to_dict("records") == [
        {"step": 0, "name": "train/loss", "value": 1.0},
        {"step": 1, "name": "train/loss", "value": 0.5},
        {"step": 2, "name": "train/loss", "value": 1 / 3},
        {"step": 3, "name": "train/loss", "value": 0.125},
        {"step": 3, "name": "val/ndcg@10", "value": 0.5},
    ]
    fresh = CurveRecord(tmp_path)  # keep_before_step=0: a fresh run drops every old line
    fresh.log_metrics({"train/loss": 2.0}, step=0)
    assert read_curves(tmp_path).to_dict("records") == [{"step": 0, "name": "train/loss", "value": 2.0}]


def test_a_run_dir_with_only_the_old_metrics_csv_still_reads(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "metrics.csv").write_text(
        "epoch,lr-AdamW/pg1,step,train/loss,val/ndcg@10\n0,1e-5,0,2.5,\n0,2e-5,1,1.5,\n0,,1,,0.25\n"
    )
    got = read_curves(tmp_path)
    assert got[got["name"] == "train/loss"][["step", "value"]].values.tolist() == [[0, 2.5], [1, 1.5]]
    assert got[got["name"] == "val/ndcg@10"][["step", "value"]].values.tolist() == [[1, 0.25]]
    assert read_curves(tmp_path / "nothing").empty


@pytest.mark.parametrize("logger", ["none", "tensorboard"])
def test_tables_and_figures_read_the_curves_of_a_run_without_the_csv_logger(
    trained, logger, tmp_path, monkeypatch
):
    run, summary, _ = trained(logger)
    assert not (run / "logs" / "metrics.csv").exists()
    records = sweep.training_records(run)
    dev = {r["step"]: r["value"] for r in records if r["task"] == "dev_curve" and r["metric"] == "ndcg@10"}
    loss = [r["step"] for r in records if r["task"] == "training_curve" and r["metric"] == "loss"]
    assert sorted(dev) == [1, 3] and loss == [0, 1, 2, 3]
    assert dev[3] == pytest.approx(summary["metrics"]["val/ndcg@10"])  # the last dev check
    store = tmp_path / "results.jsonl"
    ResultsStore(store).append(records, {"run_id": "r", "experiment": "combined", "seed": 0, "model": "m"})
    spec = {"title": "t", "experiments": ["ablation/combined"], "baselines": [], "evaluate": False}
    monkeypatch.setattr(tables, "load_sweeps", lambda: {"figure3": spec})
    result = tables.build(store, "figure3", tmp_path / "out")
    assert result["dev_curves"]["combined"] == pytest.approx(dev)
    assert (tmp_path / "out" / "dev_curves.png").stat().st_size > 1000
