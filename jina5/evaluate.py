"""Evaluation entry point (Hydra). Read top to bottom: load the model, run the suite, store, print.

    python -m jina5.evaluate model=outputs/runs/combined-seed0     # a training run dir (its encoder/)
    python -m jina5.evaluate model=teacher                          # baselines: conf/eval.yaml `baselines`
    python -m jina5.evaluate model=untrained_student eval=smoke
    python -m jina5.evaluate model=path/to/encoder                  # a Encoder.save_pretrained dir
    python -m jina5.evaluate model=sentence-transformers/all-MiniLM-L6-v2
    python -m jina5.evaluate model=path/to/export backend=onnx quantize=int8   # its exported int8 graph
    python -m jina5.evaluate model=[teacher,outputs/runs/combined-seed0,outputs/runs/combined-seed1]

``model`` resolves as :func:`jina5.eval.models.load_model` says: a baseline, a run dir, an exported
encoder dir, or a model source. A list evaluates each model in turn in this one process
(:func:`evaluate_models`): the interpreter starts, the libraries import and the tasks are built once;
each model is its own evaluation (run id, records, summary), exactly as if evaluated alone.
It encodes under ``precision`` (``jina5.model.precision``: bf16 autocast where the hardware has it), which is
part of the model fingerprint that keys the results store.
Every record goes to the results store ``results`` (checked writable before the model loads); a run
killed or failed before its last task is partial, left out of every table, and resumed by the next
evaluation of the same model, label, seed and suite (``jina5.eval.completion``). The summary table
(main metric per task at float32 full dim, binary / int8 at full dim, float32 at the smallest dim,
per-task seconds, task-type and overall averages) is printed and written next to the store as
``<run_id>.summary.txt``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from jina5.eval.encoding import model_fingerprint
from jina5.eval.machine import machine
from jina5.eval.models import load_model
from jina5.eval.store import ResultsStore, new_run_id
from jina5.eval.suite import run_suite
from jina5.eval.summary import format_summary, summarise
from jina5.eval.tasks import build_tasks, format_task_list
from jina5.model.settings import positive_int

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run the suite for ``cfg.model``; returns {run, records, summary, texts_encoded, seconds}."""
    if OmegaConf.is_list(cfg.model):
        raise ValueError("evaluate takes one model; evaluate_models takes model=[...]")
    start = time.perf_counter()
    positive_int(cfg.eval.batch_size, "eval.batch_size", "texts per encode batch")  # before the model loads
    store = ResultsStore(cfg.results)
    store.check_writable()  # before the model loads and the suite runs, not at the first write
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
            "machine": machine(),
            **({"graph": model.graph} if model.graph else {}),
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


def evaluate_models(cfg: DictConfig) -> list[dict[str, Any]]:
    """:func:`evaluate` for each model of ``cfg.model`` (one, or a list), one after the other, in order.

    Every model is a separate evaluation with its own run id, so ``run_id`` must be null with several;
    ``label`` and ``seed``, when set, apply to each of them. A model that fails stops the list: the
    models before it keep their records.
    """
    models = list(cfg.model) if OmegaConf.is_list(cfg.model) else [cfg.model]
    if len(models) > 1 and cfg.get("run_id"):
        raise ValueError(
            f"run_id={cfg.run_id} names one evaluation, but model= lists {len(models)} models; "
            "leave run_id null (each model gets <experiment>-seed<seed>-<UTC time>) or evaluate one model"
        )
    out = []
    for spec in models:
        one = cfg.copy()
        with open_dict(one):
            one.model = spec
        out.append(evaluate(one))
    return out


@hydra.main(version_base="1.3", config_path="pkg://jina5.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate_models(cfg)


if __name__ == "__main__":
    main()
