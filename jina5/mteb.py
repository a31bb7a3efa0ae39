"""MTEB entry point (Hydra): run MTEB tasks on a jina5 model, file the scores in our results store too.

    python -m jina5.mteb model=outputs/runs/combined-seed0 tasks=[STS12,SciFact]
    python -m jina5.mteb model=teacher tasks=[STS12] dims=[64] precisions=[float32,binary]
    python -m jina5.mteb model=path/to/encoder tasks=[mteb.mocks:MockRetrievalTask]   # offline

``model`` resolves as for ``python -m jina5.evaluate`` (:func:`jina5.eval.models.load_model`: a baseline
key, a run dir, an encoder dir, a model source), and so do ``label``, ``seed``, ``run_id``,
``results`` and the encoding overrides (conf/mteb.yaml composes conf/eval.yaml).
``tasks`` are MTEB task names (``mteb.get_tasks``) or ``module:Class`` of an ``AbsTask`` (mteb's
offline mock tasks: ``mteb.mocks:MockSTSTask``).

Each (dim, precision) is one ``mteb.evaluate`` of :class:`jina5.eval.mteb_adapter.MTEBEncoder`, with
mteb's own result cache at ``mteb_cache`` (files under ``jina5/<label>``, revision = the model's
content fingerprint; ``reuse_cached=false`` re-runs). Every main score then becomes one record of the
results store (:class:`jina5.eval.store.ResultsStore`), one per (task, split, subset, dim, precision):

    task = "mteb:<task type>"  (e.g. mteb:Retrieval; never one of the held-out suite's task types,
                                so the suite's averages and summaries ignore these rows)
    dataset = the MTEB task name, language = the HF subset (None for "default"), split,
    metric = the task's main score name (ndcg_at_10, cosine_spearman, ...), dim, precision,
    value = the main score (MTEB's scale, 0..1), plus task_name, hf_subset, languages,
    mteb_task_type, mteb_model_name, mteb_revision, mteb_version, eval_seconds

with the run fields of ``python -m jina5.evaluate`` (run_id, experiment, seed, model,
model_fingerprint, config). The run's ``config.eval`` holds ``suite: mteb`` (the key that names a
run's evaluation suite, so tables that read one suite keep MTEB runs apart), the tasks, dims,
precisions and the mteb version; the records carry no ``suite`` field of their own. The table of
scores is printed and written next to the store as ``<run_id>.summary.txt``. As for the held-out suite,
the store is checked writable before the model loads, and a run stopped before its last (dim,
precision) is partial and left out of every reader (``jina5.eval.completion``).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import hydra
from omegaconf import DictConfig

from jina5.eval.encoding import model_fingerprint
from jina5.eval.models import load_model
from jina5.eval.mteb_adapter import MTEBEncoder
from jina5.eval.store import ResultsStore, new_run_id
from jina5.eval.suite import eval_dims

log = logging.getLogger(__name__)

SUITE = "mteb"
PRECISIONS = ("float32", "binary")


def resolve_tasks(specs: Iterable[str]) -> list[Any]:
    """MTEB task objects for ``specs``, in order: ``module:Class`` imports an ``AbsTask`` subclass (or
    instance); anything else is an MTEB task name (``mteb.get_tasks``; metadata only, no download)."""
    import mteb

    specs = [specs] if isinstance(specs, str) else [str(s) for s in specs]  # tasks=STS12 is one task
    if not specs:
        raise ValueError("tasks=[] names no MTEB task; e.g. tasks=[STS12,SciFact]")
    names = [s for s in specs if ":" not in s]
    by_name = {t.metadata.name: t for t in mteb.get_tasks(tasks=names)} if names else {}
    tasks = []
    for spec in specs:
        if ":" not in spec:
            tasks.append(by_name[spec])
            continue
        module, _, attr = spec.partition(":")
        obj = getattr(importlib.import_module(module), attr, None)
        if obj is None:
            raise ValueError(f"tasks: {module} has no {attr!r} (spec {spec!r})")
        tasks.append(obj() if isinstance(obj, type) else obj)
    return tasks


def check_precisions(precisions: Sequence[str]) -> list[str]:
    """The configured precisions, each ``float32`` or ``binary``."""
    out = [str(p) for p in precisions]
    bad = [p for p in out if p not in PRECISIONS]
    if bad or not out:
        raise ValueError(f"precisions={out}: MTEB runs support {list(PRECISIONS)}")
    return list(dict.fromkeys(out))


def task_records(result: Any, task: Any, dim: int, precision: str, meta: Any) -> list[dict]:
    """One store record per (split, subset) main score of an mteb ``TaskResult`` (module docstring)."""
    md = task.metadata
    records = []
    for split, scores in result.scores.items():
        for score in scores:
            subset = score.get("hf_subset", "default")
            records.append(
                {
                    "task": f"mteb:{md.type}",
                    "dataset": md.name,
                    "language": None if subset == "default" else subset,
                    "split": split,
                    "metric": md.main_score,
                    "dim": int(dim),
                    "precision": precision,
                    "value": float(score["main_score"]),
                    "task_name": md.name if subset == "default" else f"{md.name}/{subset}",
                    "hf_subset": subset,
                    "languages": list(score.get("languages") or []),
                    "mteb_task_type": md.type,
                    "mteb_model_name": meta.name,
                    "mteb_revision": meta.revision,
                    "mteb_version": result.mteb_version,
                    "eval_seconds": result.evaluation_time,
                }
            )
    return records


def format_records(records: Sequence[Mapping[str, Any]], title: str) -> str:
    """A plain table of the main scores: task, split, dim, precision, metric, value."""
    rows = [("dataset", "type", "split", "dim", "precision", "metric", "value")]
    rows += [
        (
            r["task_name"],
            r["mteb_task_type"],
            r["split"],
            str(r["dim"]),
            r["precision"],
            r["metric"],
            f"{r['value']:.4f}",
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join([title, *lines])


def run_mteb(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.tasks`` on ``cfg.model`` at every (dim, precision); returns {run, records, results}."""
    import mteb

    start = time.perf_counter()
    store = ResultsStore(cfg.results)
    store.check_writable()
    model = load_model(cfg)
    encoder = model.encoder
    experiment = cfg.get("label") or model.experiment
    seed = cfg.get("seed") if cfg.get("seed") is not None else model.seed
    label = f"{experiment}-seed{seed}" if seed is not None else str(experiment)
    tasks = resolve_tasks(cfg.tasks)
    dims = eval_dims(cfg.get("dims") or [], encoder.dim)
    precisions = check_precisions(cfg.precisions)
    fingerprint = model_fingerprint(encoder)
    cache = mteb.ResultCache(cfg.mteb_cache) if cfg.get("mteb_cache") else None
    settings = {
        "suite": SUITE,
        "tasks": [t.metadata.name for t in tasks],
        "dims": dims,
        "precisions": precisions,
        "batch_size": int(cfg.batch_size),
        "mteb_version": getattr(mteb, "__version__", None),
    }
    run = {
        "run_id": cfg.get("run_id") or new_run_id(f"{experiment}-mteb", seed),
        "experiment": experiment,
        "seed": seed,
        "model": model.name,
        "model_fingerprint": fingerprint,
        "config": {
            "model": model.name,
            "model_kind": model.kind,
            "encoder": encoder.encoder_config(),
            "eval": settings,
            "train": model.train_config,
        },
    }
    log.info(
        "model %s (%s, %d-d) as mteb model jina5/%s; tasks %s",
        model.name,
        model.kind,
        encoder.dim,
        label,
        settings["tasks"],
    )
    store.start_run(run, None)  # partial (left out of every reader) until complete_run below
    records: list[dict] = []
    results = {}
    for dim in dims:
        for precision in precisions:
            wrapped = MTEBEncoder(
                encoder,
                dim=dim if dim < encoder.dim else None,
                binary=precision == "binary",
                batch_size=int(cfg.batch_size),
                name=label,
                revision=fingerprint,
            )
            meta = wrapped.mteb_model_meta
            result = mteb.evaluate(
                wrapped,
                tasks,
                cache=cache,
                overwrite_strategy="only-missing" if cfg.reuse_cached else "always",
                encode_kwargs={"batch_size": int(cfg.batch_size)},
                show_progress_bar=bool(cfg.progress),
            )
            results[(dim, precision)] = result
            by_name = {t.metadata.name: t for t in tasks}
            recs = [
                rec
                for task_result in result.task_results
                for rec in task_records(task_result, by_name[task_result.task_name], dim, precision, meta)
            ]
            store.append(recs, run)
            records += recs
    store.complete_run(run)
    seconds = time.perf_counter() - start
    title = (
        f"{model.name}  run_id={run['run_id']}  experiment={experiment}  seed={seed}  "
        f"(mteb model {meta.name}, revision {fingerprint[:12]}; {len(tasks)} tasks; {seconds:.0f} s total)"
    )
    text = format_records(records, title)
    print(text, flush=True)
    summary_file = store.path.parent / f"{run['run_id']}.summary.txt"
    summary_file.parent.mkdir(parents=True, exist_ok=True)
    summary_file.write_text(text + "\n")
    log.info("appended %d records to %s; summary in %s", len(records), store.path, summary_file)
    return {"run": run, "records": records, "results": results, "seconds": seconds}


@hydra.main(version_base="1.3", config_path="pkg://jina5.conf", config_name="mteb")
def main(cfg: DictConfig) -> None:
    logging.getLogger("mteb.timing").setLevel(logging.WARNING)  # one line per phase of every task
    if not cfg.progress:
        import datasets

        datasets.disable_progress_bars()
    run_mteb(cfg)


if __name__ == "__main__":
    main()
