"""Evaluation entry point (Hydra). Read top to bottom: load the model, run the suite, store, print.

    python -m jina5.evaluate model=outputs/runs/combined-seed0     # a training run dir (its encoder/)
    python -m jina5.evaluate model=teacher                          # baselines: jina5/conf/eval.yaml `baselines`
    python -m jina5.evaluate model=untrained_student eval=smoke
    python -m jina5.evaluate model=path/to/encoder                  # a Encoder.save_pretrained dir
    python -m jina5.evaluate model=sentence-transformers/all-MiniLM-L6-v2

``model`` is resolved in this order: a key of ``baselines``; a run dir (holds ``encoder/``; its
``config.yaml`` gives experiment_name and seed); an exported encoder dir (``jina5_encoder.json`` or
``config.json``); a path-like spec (``jina5.assets.is_path_like``: ``/nope``, ``./x``, ``outputs/runs/typo``)
that is neither fails at once ("no such run or encoder directory", no hub lookup); otherwise a model
source for ``Encoder`` (bundled name, ``hub:<id>``, hub id, ``tiny:bert``).
It encodes under ``precision`` (``jina5.precision``: bf16 autocast where the hardware has it), which is
part of the model fingerprint that keys the results store.
Every record goes to the results store ``results``; the summary table (main metric per task at float32
full dim, binary / int8 at full dim, float32 at the smallest dim, per-task seconds, task-type and
overall averages) is printed and written next to the store as ``<run_id>.summary.txt``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from jina5.assets import is_path_like
from jina5.encoder import Encoder
from jina5.encoder_io import JINA5_CONFIG
from jina5.eval.encoding import model_fingerprint
from jina5.eval.store import ResultsStore, new_run_id
from jina5.eval.suite import run_suite
from jina5.eval.summary import format_summary, summarise
from jina5.eval.tasks import build_tasks, format_task_list
from jina5.precision import resolve_precision

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    encoder: Encoder
    name: str  # the `model` field of the records
    kind: str  # baseline | run | encoder_dir | source
    experiment: str | None
    seed: int | None
    train_config: dict | None = None


def run_label(train_cfg: DictConfig) -> str:
    """The experiment a training run is reported as: its ``run_name`` without ``-seed<seed>``, so a run
    given its own name (``combined-lr3e-4-seed0``) is not merged with ``combined``; else ``experiment_name``."""
    name, suffix = train_cfg.get("run_name"), f"-seed{train_cfg.get('seed')}"
    if not name:
        return train_cfg.get("experiment_name")
    return name[: -len(suffix)] if name.endswith(suffix) else name


def load_model(cfg: DictConfig) -> LoadedModel:
    """Resolve ``cfg.model`` (module docstring) into a Encoder plus its run identity."""
    spec = str(cfg.model)
    baselines = cfg.get("baselines") or {}
    path = Path(spec).expanduser()
    if spec in baselines:
        kwargs = OmegaConf.to_container(baselines[spec], resolve=True)
        loaded = LoadedModel(Encoder(**kwargs), spec, "baseline", spec, None)
    elif path.is_dir() and (path / "encoder").is_dir():
        train_cfg = OmegaConf.load(path / "config.yaml") if (path / "config.yaml").exists() else None
        train_dict = OmegaConf.to_container(train_cfg, resolve=False) if train_cfg is not None else None
        seed = train_cfg.get("seed") if train_cfg is not None else None
        experiment = run_label(train_cfg) if train_cfg is not None else None
        loaded = LoadedModel(
            Encoder.from_pretrained(path / "encoder"),
            str(path),
            "run",
            experiment or path.name,
            seed,
            train_dict,
        )
    elif path.is_dir() and ((path / JINA5_CONFIG).exists() or (path / "config.json").exists()):
        # our export carries its pooling / prompts / max length; a plain HF or sentence-transformers dir
        # takes cfg.pooling
        kwargs = {} if (path / JINA5_CONFIG).exists() else {"pooling": cfg.pooling}
        loaded = LoadedModel(
            Encoder.from_pretrained(path, **kwargs), str(path), "encoder_dir", path.name, None
        )
    elif path.exists():
        raise FileNotFoundError(
            f"model={spec!r} is a path but neither a run dir (with encoder/) nor an encoder dir "
            f"(with {JINA5_CONFIG} or config.json)"
        )
    elif is_path_like(spec):
        raise FileNotFoundError(
            f"model={spec}: no such run or encoder directory ({path.absolute()}); "
            f"or name a baseline: {', '.join(sorted(baselines))}"
        )
    else:
        loaded = LoadedModel(Encoder(spec, pooling=cfg.pooling), spec, "source", spec, None)
    if cfg.get("max_length"):
        loaded.encoder.max_length = int(cfg.max_length)
    if cfg.get("prompts") is not None:
        loaded.encoder.prompts = dict(OmegaConf.to_container(cfg.prompts, resolve=True))
    device_type = next(loaded.encoder.parameters()).device.type
    loaded.encoder.compute_precision = resolve_precision(cfg.precision, device_type)
    return loaded


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run the suite for ``cfg.model``; returns {run, records, summary, texts_encoded, seconds}."""
    start = time.perf_counter()
    model = load_model(cfg)
    experiment = cfg.get("label") or model.experiment
    seed = cfg.get("seed") if cfg.get("seed") is not None else model.seed
    eval_cfg = OmegaConf.to_container(cfg.eval, resolve=True)
    run = {
        "run_id": cfg.get("run_id") or new_run_id(experiment, seed),
        "experiment": experiment,
        "seed": seed,
        "model": model.name,
        "config": {
            "model": model.name,
            "model_kind": model.kind,
            "encoder": model.encoder.encoder_config(),
            "eval": eval_cfg,
            "train": model.train_config,
        },
    }
    tasks, skipped = build_tasks(eval_cfg)
    log.info(
        "model %s (%s, %d-d, max_length %d, prompts %s)",
        model.name,
        model.kind,
        model.encoder.dim,
        model.encoder.max_length,
        model.encoder.prompts,
    )
    log.info("tasks:\n%s", format_task_list(tasks, skipped))
    store = ResultsStore(cfg.results)
    fingerprint = model_fingerprint(model.encoder)
    stats: dict[str, Any] = {}
    records = run_suite(
        model.encoder,
        eval_cfg,
        store=store,
        run=run,
        fingerprint=fingerprint,
        reuse=bool(cfg.reuse_cached),
        tasks=(tasks, skipped),
        progress=bool(cfg.progress),
        stats=stats,
    )
    texts = stats["texts_encoded"]
    table = summarise(records)
    seconds = time.perf_counter() - start
    title = (
        f"{model.name}  run_id={run['run_id']}  experiment={experiment}  seed={seed}  "
        f"({len(tasks)} tasks, {len(skipped)} skipped; {texts} texts encoded; {seconds:.0f} s total)"
    )
    text = format_summary(table, title)
    if skipped:
        text += "\nskipped:\n" + "\n".join(f"  {s.name}: {s.reason}" for s in skipped)
    print(text, flush=True)
    summary_file = store.path.parent / f"{run['run_id']}.summary.txt"
    summary_file.parent.mkdir(parents=True, exist_ok=True)
    summary_file.write_text(text + "\n")
    log.info("appended %d records to %s; summary in %s", len(records), store.path, summary_file)
    return {
        "run": run,
        "records": records,
        "summary": table,
        "texts_encoded": texts,
        "seconds": seconds,
        "skipped": skipped,
    }


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
