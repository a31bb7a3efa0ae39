"""The evaluation suite: every configured task x Matryoshka dims x precisions, cached.

    run_suite(encoder, eval_cfg, store=, run=) -> records       (one dict per metric value)

Encoding (memo, adapter routing, fingerprint) is :mod:`jina5.eval.encoding`; the summary of the
records is :mod:`jina5.eval.summary`.

**One encoding pass.** Before the first task runs, every text of the tasks to run (those not reused
from the store) is encoded: one call per (adapter view, prompt), :func:`prefetch`. A task's
``eval_seconds`` is its evaluator's wall time plus its share of that pass: the pass's seconds times
the characters of the texts it is the first task to need over those of all the texts.

**Dims.** ``eval_dims(dims, full)``: every configured dim above the model's dim becomes the full dim
(logged), and the full dim is always added (it is the reference of the relative drops and the
summary's main column).

**Caching.** With a results store and a model fingerprint (:func:`jina5.eval.encoding.model_fingerprint`),
a task whose records exist for (fingerprint, task key, dims, precisions) is not re-run: the latest
(:func:`jina5.eval.summary.latest_runs`) such records are appended again under the new run, with
``cached_from`` naming the run that computed them. The task key
(:attr:`jina5.eval.tasks.EvalTask.key`) hashes the task's settings and inputs. Stored records whose
main metric has no per-item scores (an older store, or a missing sidecar file) are not reused: the
task is evaluated again, so that every table row can get its interval.

**Complete or absent** (:mod:`jina5.eval.completion`). With a store, the run files a start line naming
its tasks before the first one and a completion line after the last; until then it is partial and no
reader but its own resumption sees it. A run continues the partial runs of the same model, experiment,
seed and evaluation settings (killed or failed before): with ``reuse``, their stored tasks are taken as
cached ones (``cached_from`` names the partial run) and only the tasks they lack are evaluated (without
``reuse``, every task is); the completion line names them as resumed. The run's own stored tasks (a ``run_id`` given again) are never
evaluated or appended twice.

**Per-item scores.** Each evaluator attaches :class:`jina5.eval.items.ItemScores` to its main-metric
records; with a store they go to its sidecar (:meth:`jina5.eval.store.ResultsStore.write_items`) and
the records' ``items`` field names the file (a cached record names the file of the run it came from);
without a store the records keep the objects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from jina5.eval.completion import evaluation_settings, resumable
from jina5.eval.config import plain, require
from jina5.eval.encoding import AdapterRouter, MemoEncode, model_dim, model_fingerprint
from jina5.eval.items import ItemScores
from jina5.eval.metrics import check_precisions, relative_drops
from jina5.eval.store import ResultsStore, isna, run_config
from jina5.eval.summary import latest_runs
from jina5.eval.task_types import MAIN_METRIC, TASK_TYPES
from jina5.eval.tasks import EvalTask, SkippedTask, build_tasks
from jina5.model.text_budget import report_long_texts

log = logging.getLogger(__name__)

# The record fields a cached task's records are copied with (the store's run fields come from the new run).
CACHED_FIELDS = (
    "task",
    "dataset",
    "language",
    "split",
    "metric",
    "dim",
    "precision",
    "value",
    "relative_drop",
    "task_name",
    "task_key",
    "eval_seconds",
    "adapter",
    "items",
    "cached_from",
    "ann",
)


def eval_dims(dims: Iterable[int] | None, full: int) -> list[int]:
    """Configured Matryoshka dims for a ``full``-d model: dims > full become full (logged), full added."""
    out = set()
    for d in dims or []:
        d = int(d)
        if d < 1:
            raise ValueError(f"eval dims must be positive, got {d}")
        if d > full:
            log.info("eval dim %d exceeds the model's dim %d: evaluating at %d instead", d, full, full)
            d = full
        out.add(d)
    return sorted(out | {full})


def cached_records(
    table: pd.DataFrame | None,
    fingerprint: str | None,
    task: EvalTask,
    dims: list[int],
    precisions: list[str],
    has_items: Callable[[Any], bool] = lambda ref: True,
) -> tuple[list[dict], str] | None:
    """(records, run_id) of the latest stored run of (fingerprint, task.key) if it covers every
    (dim, precision) and ``has_items`` holds for the ``items`` field of each of its main-metric
    records (:meth:`ResultsStore.has_items`), else None."""
    if table is None or fingerprint is None or "task_key" not in table.columns:
        return None
    rows = table[(table["model_fingerprint"] == fingerprint) & (table["task_key"] == task.key)]
    if rows.empty:
        return None
    rows = latest_runs(rows, by=(), suite=None)  # the task key pins its settings, whatever the suite
    latest = rows["run_id"].iloc[0]
    have = set(zip(rows["dim"].astype(int), rows["precision"], strict=True))
    if not {(d, p) for d in dims for p in precisions} <= have:
        return None
    rows = rows[rows["dim"].astype(int).isin(dims) & rows["precision"].isin(precisions)]
    main = rows[rows["metric"] == MAIN_METRIC[task.type]]
    refs = main["items"] if "items" in main.columns else pd.Series([None] * len(main), dtype=object)
    if not all(has_items(None if isna(ref) else ref) for ref in refs):
        log.info("%s: the stored results have no per-item scores: evaluating again", task.name)
        return None
    out = []
    for rec in rows.to_dict(orient="records"):
        r = {k: None if isna(rec.get(k)) else rec.get(k) for k in CACHED_FIELDS}
        r["dim"] = int(r["dim"])
        out.append(r)
    return out, str(latest)


def run_suite(
    model: Any,
    eval_cfg: Mapping[str, Any],
    store: ResultsStore | str | None = None,
    run: Mapping[str, Any] | None = None,
    fingerprint: str | None = None,
    reuse: bool = True,
    types: Iterable[str] | None = None,
    tasks: tuple[list[EvalTask], list[SkippedTask]] | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    stats: dict[str, Any] | None = None,
) -> list[dict]:
    """Run every configured task and return its records (appended to ``store`` task by task).

    Args:
        model: a ``Encoder`` (or anything with its ``encode``) or ``fn(texts, prompt=None)``.
        eval_cfg: the ``eval`` config (``conf/eval/*.yaml``): dims, precisions, batch_size, threads
            (the BLAS / OpenMP threads of the evaluators: scikit-learn, faiss; encoding keeps torch's
            thread count), route_adapters, task blocks.
        store: a ``ResultsStore`` (or its path) to append to and to look cached results up in.
        run: run fields for the store (run_id, experiment, seed, model, config); required with a store.
        fingerprint: the model's fingerprint; default :func:`model_fingerprint` for a
            ``Encoder`` (caching needs one; a plain callable is never cached).
        reuse: reuse stored results of the same (fingerprint, task key, dims, precisions).
        types: restrict to some task types; tasks: prebuilt ``build_tasks`` output.
        batch_size: texts per encode call (default ``eval_cfg.batch_size``); progress: encode bars.
        stats: if given, filled with ``texts_encoded``, ``encode_seconds``, ``dims``, ``precisions``
            and ``tasks`` (per task: name, seconds, cached_from).

    Each record: task, dataset, language, split, metric, dim, precision, value, relative_drop
    (vs float32 at full dim), task_name, task_key, eval_seconds (the task's wall time where it was
    computed), cached_from (run_id it was reused from, or None), adapter (the task adapter that
    encoded it, None for a plain model; see :class:`jina5.eval.encoding.AdapterRouter`).
    """
    cfg = plain(eval_cfg)
    precisions = check_precisions(require(cfg, "precisions"))
    if "float32" not in precisions:
        precisions = ["float32", *precisions]  # the reference of every relative drop
    if isinstance(store, str):
        store = ResultsStore(store)
    if store is not None and not run:
        raise ValueError("run_suite: a store needs run fields (run_id, experiment, seed, model)")
    router = AdapterRouter(
        model,
        batch_size or int(require(cfg, "batch_size")),
        progress,
        bool(require(cfg, "route_adapters")),
    )
    if fingerprint is None and hasattr(model, "backbone") and hasattr(model, "encoder_config"):
        fingerprint = model_fingerprint(model)
    threads = require(cfg, "threads")
    full = model_dim(router.route(TASK_TYPES[0])[0], model)
    dims = eval_dims(require(cfg, "dims"), full)
    todo, skipped = tasks if tasks is not None else build_tasks(cfg, types)
    run_fields = {**(run or {}), "model_fingerprint": fingerprint}
    run_id = str(run_fields.get("run_id"))
    table, resumes = None, []
    if store is not None and fingerprint and store.path.exists():
        table, partials = store.read_all()
        settings = evaluation_settings(run_config(run_fields.get("config")))
        resumes = resumable(partials, fingerprint, run_fields, settings)
        run_ids = table["run_id"].astype(str)
        table = table[run_ids == run_id] if not reuse else table[~run_ids.isin(set(partials) - set(resumes))]
        if reuse and set(resumes) - {run_id}:
            log.info(
                "eval: resuming the partial run(s) %s: their stored tasks are not evaluated again", resumes
            )
    has_items = store.has_items if store is not None else (lambda ref: False)
    if store is not None:
        store.start_run(run_fields, [t.name for t in todo])

    log.info("eval: %d tasks (%d skipped), dims %s, precisions %s", len(todo), len(skipped), dims, precisions)
    # without reuse, ``table`` holds only this run's own records (stored before it was stopped)
    hits = [cached_records(table, fingerprint, t, dims, precisions, has_items) for t in todo]
    to_encode = [t for t, hit in zip(todo, hits, strict=True) if hit is None]
    for task in to_encode:
        report_task_long_texts(task, model)
    shares = prefetch(router, to_encode)
    records: list[dict] = []
    task_log: list[dict] = []
    for n, (task, hit) in enumerate(zip(todo, hits, strict=True), start=1):
        encode, adapter = router.route(task.type)
        start = time.perf_counter()
        if hit is not None and hit[1] == run_id:  # this run's own records, stored before it was stopped
            recs = hit[0]
            seconds = round(time.perf_counter() - start, 2)
            status = "stored by this run"
        elif hit is not None:
            recs = [{**r, "cached_from": hit[1]} for r in hit[0]]
            seconds = round(time.perf_counter() - start, 2)
            status = f"cached (run {hit[1]})"
        else:
            # k-means / probes / faiss on these small problems: 1 thread is fastest (eval.threads)
            with threadpool_limits(limits=threads):
                recs = relative_drops(task.run(encode, dims, precisions))
            recs = keep_items(recs, task, store, (run or {}).get("run_id"))
            texts, encode_seconds = shares[id(task)]
            seconds = round(time.perf_counter() - start + encode_seconds, 2)
            recs = [
                {
                    **r,
                    "task_name": task.name,
                    "task_key": task.key,
                    "eval_seconds": seconds,
                    "cached_from": None,
                    "adapter": adapter,
                }
                for r in recs
            ]
            status = f"{seconds:.1f} s, {texts} texts encoded"
        main = _main_value(recs, task.type, full)
        log.info(
            "[%d/%d] %s -> %s %.4f (%s)", n, len(todo), task.describe(), MAIN_METRIC[task.type], main, status
        )
        if store is not None and not (hit is not None and hit[1] == run_id):
            store.append(recs, run_fields)
        records += recs
        task_log.append(
            {
                "name": task.name,
                "seconds": seconds,
                "cached_from": hit[1] if hit else None,
            }
        )
    if store is not None:
        store.complete_run(run_fields, [r for r in resumes if r != run_id])
    log.info("eval: encoded %d texts in %.1f s", router.texts_encoded, router.seconds)
    if stats is not None:
        stats.update(
            texts_encoded=router.texts_encoded,
            encode_seconds=round(router.seconds, 2),
            dims=dims,
            precisions=precisions,
            tasks=task_log,
            skipped=skipped,
        )
    return records


def report_task_long_texts(task: EvalTask, model: Any) -> None:
    """Warn of the task's texts (scored, and a probe's training texts) longer than the character budget
    of ``model``'s max length, which its tokenizer gets cut (``jina5.model.text_budget``); a plain
    callable has no budget."""
    if hasattr(model, "char_budget"):
        texts = [*task.held_out_texts(), *task.inputs.get("train_texts", ())]
        report_long_texts(f"eval task {task.name}", texts, model.char_budget(), model.max_length)


def prefetch(router: AdapterRouter, tasks: Sequence[EvalTask]) -> dict[int, tuple[int, float]]:
    """Encode every text of ``tasks`` (:meth:`EvalTask.encoded_texts`) in one call per (adapter view,
    prompt), in task order, so that the model's length-sorted batches span the tasks. Returns
    {id(task): (the texts it is the first task to need, its share of the encoding seconds)}, the share
    in proportion to those texts' characters."""
    wanted: dict[tuple[int, str], dict[str, None]] = {}  # ordered sets of texts
    memos: dict[int, MemoEncode] = {}
    firsts: dict[int, tuple[int, int]] = {}
    for task in tasks:
        memo = router.route(task.type)[0]
        memos[id(memo)] = memo
        count = chars = 0
        for prompt, texts in task.encoded_texts().items():
            seen = wanted.setdefault((id(memo), prompt), {})
            for text in texts:
                if text not in seen:
                    seen[text] = None
                    count, chars = count + 1, chars + len(text)
        firsts[id(task)] = (count, chars)
    before = router.seconds
    for (memo_id, prompt), texts in wanted.items():
        memos[memo_id].prefetch(list(texts), prompt)
    seconds = router.seconds - before
    total = sum(chars for _, chars in firsts.values()) or 1
    log.info("eval: encoded %d texts for %d tasks in %.1f s", router.texts_encoded, len(tasks), seconds)
    return {key: (count, seconds * chars / total) for key, (count, chars) in firsts.items()}


def keep_items(
    recs: list[dict], task: EvalTask, store: ResultsStore | None, run_id: str | None
) -> list[dict]:
    """``recs`` with ``items`` on the main-metric records only: with a store, the sidecar file their
    :class:`ItemScores` were written to (:meth:`ResultsStore.write_items`); without, the objects.
    Every other record gets ``items`` None."""
    main = MAIN_METRIC[task.type]
    by_setting: dict[tuple[int, str], ItemScores] = {}
    out = []
    for r in recs:
        items = r.get("items")
        is_main = r["metric"] == main and isinstance(items, ItemScores)
        if is_main:
            by_setting[(int(r["dim"]), r["precision"])] = items
        out.append({**r, "items": items if is_main else None})
    if store is not None and by_setting:
        ref = store.write_items(str(run_id), task.key, by_setting)
        out = [{**r, "items": ref if r["items"] is not None else None} for r in out]
    return out


def _main_value(recs: list[dict], task_type: str, full: int) -> float:
    """The main metric at (full dim, float32) of one task's records, for the progress line."""
    vals = [
        r["value"]
        for r in recs
        if (r["metric"], r["dim"], r["precision"]) == (MAIN_METRIC[task_type], full, "float32")
    ]
    return vals[0] if vals else float("nan")
