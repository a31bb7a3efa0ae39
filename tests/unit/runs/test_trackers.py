"""Experiment trackers (``logger=wandb``, ``logger=mlflow``, both inside ``logger=many``): a tiny run's
tracker files, read back offline, hold the resolved config and the csv logger's curves."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import run_cfg
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from jina5.runs.curves import CurveRecord
from jina5.runs.trackers import MLflowLogger, WandbLogger, mlflow_key
from jina5.train import build, train

wandb = pytest.importorskip("wandb")
pytest.importorskip("mlflow")

SHORT = (  # 4 steps, dev checks after steps 2 and 4, every step logged
    "experiment=ablation/combined",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
)
TRACKERS = ("logger=many", "+logger@logger.wandb=wandb", "+logger@logger.mlflow=mlflow")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> tuple[Path, dict, str]:
    """(run dir, its config.yaml, the MLflow tracking URI) of a SHORT run with csv, tensorboard, wandb
    (offline) and MLflow (a SQLite store in the test's folder)."""
    tmp = tmp_path_factory.mktemp("trackers")
    uri = f"sqlite:///{tmp}/mlflow.db"
    cfg = run_cfg(tmp, *SHORT, *TRACKERS, "logger.wandb.mode=offline", f"logger.mlflow.tracking_uri={uri}")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    return run, yaml.safe_load((run / "config.yaml").read_text()), uri


def csv_curves(run: Path) -> dict[tuple[str, int], float]:
    """{(metric, step): value} of the csv logger's ``logs/metrics.csv``."""
    table = pd.read_csv(run / "logs" / "metrics.csv")
    return {
        (name, int(step)): float(value)
        for name in table.columns
        if name != "step"
        for step, value in zip(table["step"], table[name], strict=True)
        if not math.isnan(value)
    }


def wandb_records(run_file: Path) -> list:
    """The protobuf records of an offline W&B run file (``run-<id>.wandb``): a 7-byte header (``:W&B``,
    magic 0xBEE1, version 0), then LevelDB's log format: 32 KiB blocks of chunks, each a 7-byte header
    (crc32c, length, type: 1 full, 2 first, 3 middle, 4 last) and its bytes; a block's tail shorter than a
    header is padding."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0)
    block, pos, chunks, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def flat_params(tree: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params: keys joined with ``/``, values ``str(value)`` (lists whole)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        out.update(flat_params(value, name) if isinstance(value, dict) else {name: str(value)})
    return out


def test_wandb_and_mlflow_are_selectable_alone_and_inside_many(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for logger, kind in (("wandb", WandbLogger), ("mlflow", MLflowLogger)):
        _, _, trainer = build(run_cfg(tmp_path, *SHORT, f"logger={logger}"))
        assert [type(x) for x in trainer.loggers] == [kind, CurveRecord]
    cfg = run_cfg(tmp_path, *SHORT, *TRACKERS)
    _, _, trainer = build(cfg)
    assert [type(x) for x in trainer.loggers] == [
        CSVLogger,
        TensorBoardLogger,
        WandbLogger,
        MLflowLogger,
        CurveRecord,
    ]
    assert cfg.logger.wandb.mode == "offline"  # no network unless WANDB_MODE says so
    assert cfg.logger.wandb.name == cfg.logger.mlflow.run_name == "combined-seed0"
    assert cfg.logger.mlflow.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"  # <output_root>/mlflow.db
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    cfg = run_cfg(tmp_path, *SHORT, *TRACKERS)
    assert cfg.logger.wandb.mode == "online" and cfg.logger.mlflow.tracking_uri == "http://tracking:5000"


def test_the_offline_wandb_run_holds_the_config_and_the_csv_curves(tracked):
    run, config, _ = tracked
    assert wandb.run is None  # finished when fitting ended: the next run of a sweep gets its own
    (run_file,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    (header,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (header.display_name, header.project, header.run_group) == ("combined-seed0", "jina5", "combined")
    updates = [u for r in records if r.WhichOneof("record_type") == "config" for u in r.config.update]
    assert {u.key: json.loads(u.value_json) for u in updates} == config
    logged = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row = {
                item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item
            }
            row = {k: v for k, v in row.items() if not k.startswith("_")}  # W&B's own (_step, _wandb/...)
            if row:
                step = row.pop("trainer/global_step")
                logged.update({(k, step): v for k, v in row.items()})
    expected = csv_curves(run)
    assert {k[0] for k in expected} >= {"train/loss", "val/ndcg@10", "train/lr", "epoch"}
    assert logged == pytest.approx(expected, rel=1e-6)
    (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit_code == 0


def test_the_mlflow_run_holds_the_config_as_params_and_the_csv_curves(tracked):
    from mlflow.tracking import MlflowClient

    run, config, uri = tracked
    client = MlflowClient(uri)
    (found,) = client.search_runs([client.get_experiment_by_name("jina5").experiment_id])
    assert (found.info.run_name, found.info.status) == ("combined-seed0", "FINISHED")
    assert found.data.params == flat_params(config)
    assert found.data.params["optimizer/lr"] == str(config["optimizer"]["lr"])
    assert found.data.params["objective/binary_aware"] == "[]"  # Lightning's MLFlowLogger dropped it
    expected = csv_curves(run)
    names = {name for name, _ in expected}
    assert set(found.data.metrics) == {mlflow_key(n) for n in names}
    assert "val/ndcg_at_10" in found.data.metrics
    logged = {
        (name, m.step): m.value
        for name in names
        for m in client.get_metric_history(found.info.run_id, mlflow_key(name))
    }
    assert logged == pytest.approx(expected, rel=1e-6)


def test_mlflow_keeps_long_config_values_and_names_what_it_must_cut(tmp_path, caplog):
    from mlflow.tracking import MlflowClient
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = MLflowLogger(experiment_name="t", run_name="r", tracking_uri=uri)
    datasets = ",".join(f"dataset_{i}" for i in range(60))  # 589 characters: Lightning kept 250
    logger.log_hyperparams(
        {"data": {"names": datasets, "huge": "x" * (MAX_PARAM_VAL_LENGTH + 5), "hf:org/set@v2": 1}}
    )
    logger.log_metrics({"val/ndcg@10": 0.5, "a:b": 1.0}, step=3)
    params = MlflowClient(uri).get_run(logger.run_id).data.params
    assert params["data/names"] == datasets
    assert params["data/huge"] == "x" * MAX_PARAM_VAL_LENGTH
    assert params["data/hf_org/set_at_v2"] == "1"  # a dataset name MLflow refuses as a key, renamed
    assert "MLflow param data/huge" in caplog.text and "config.yaml" in caplog.text
    history = MlflowClient(uri).get_metric_history(logger.run_id, "val/ndcg_at_10")
    assert [(m.step, m.value) for m in history] == [(3, 0.5)]
    assert mlflow_key("a:b") == "a_b" and mlflow_key("train/loss") == "train/loss"
