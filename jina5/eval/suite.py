"""The evaluation suite: every configured task x Matryoshka dims x precisions, cached, summarised.

    run_suite(encoder, eval_cfg, store=, run=) -> records       (one dict per metric value)
    summarise(records) -> DataFrame                              (main metric per task + averages)

**Encoding.** ``run_suite`` wraps the model in :class:`MemoEncode`: each distinct (prompt, text) is
encoded once per suite run at full dim in float32 (the BBC test articles serve retrieval,
classification and clustering; the 50 Lee documents serve 1,225 STS pairs), and the evaluators derive
every (dim, precision) setting from those vectors (see :mod:`jina5.eval.metrics`). A model without a
prompt the evaluators ask for (``query`` / ``document``) encodes that side without a prefix (logged
once), so a plain hub model needs no prompt config.

**Dims.** ``eval_dims(dims, full)``: every configured dim above the model's dim becomes the full dim
(logged), and the full dim is always added (it is the reference of the relative drops and the
summary's main column).

**Caching.** With a results store and a model fingerprint (:func:`model_fingerprint`: sha256 of the
backbone config, the encoding settings incl. prompts and max length, and every weight), a task whose
records exist for (fingerprint, task key, dims, precisions) is not re-run: the latest such records
are appended again under the new run, with ``cached_from`` naming the run that computed them. The
task key (:attr:`jina5.eval.tasks.EvalTask.key`) hashes the task's settings and inputs.

**Summary.** The main metric (``MAIN_METRIC``) of each task at float32 full dim, binary and int8 at
full dim and float32 at the smallest dim, plus their relative drops. A data set scored as several
tasks (``group_by``, e.g. chatterbot per language) counts once: its value is the mean over its
tasks, as MTEB averages a multilingual task's subsets. A task type's average is the mean over its
data sets; the overall average is the mean of the task-type averages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from jina5.encoder_io import VOLATILE_CONFIG, content_fingerprint
from jina5.eval.metrics import MAIN_METRIC, check_precisions, relative_drops, truncate
from jina5.eval.store import ResultsStore
from jina5.eval.tasks import TASK_TYPES, EvalTask, SkippedTask, _plain, build_tasks
from jina5.quantize import quantize

log = logging.getLogger(__name__)

# Record fields (beyond the store's required ones) that identify a task and its cache entry.
TASK_FIELDS = ("task_name", "task_key")


# ---------------------------------------------------------------------------------------------- encoding
class MemoEncode:
    """``encode(texts, prompt=None, dim=None, precision="float32") -> (N, dim)``, each distinct
    (prompt, text) computed once at full dim, float32 (then truncated / quantized on request).

    ``model`` is a ``StudentEncoder`` (anything with ``encode(texts, prompt=, batch_size=,
    progress=)``; its ``prompts`` dict, if any, decides which prompts exist) or a plain callable
    ``fn(texts, prompt=None) -> (N, D)``. Counts ``texts_encoded`` and ``seconds`` spent encoding.
    """

    def __init__(self, model: Any, batch_size: int = 64, progress: bool = False) -> None:
        self.model = model
        self.batch_size = batch_size
        self.progress = progress
        self.threads = torch.get_num_threads()  # the model encodes with these, even inside run_suite's limit
        self.texts_encoded = 0
        self.seconds = 0.0
        self._memo: dict[tuple[str | None, str], np.ndarray] = {}
        self._warned: set[str] = set()

    def _prompt(self, prompt: str | None) -> str | None:
        prompts = getattr(self.model, "prompts", None)
        if prompt is None or prompts is None or prompt in prompts:
            return prompt
        if prompt not in self._warned:
            self._warned.add(prompt)
            log.warning(
                "the model has no %r prompt (prompts: %s): encoding without a prefix", prompt, sorted(prompts)
            )
        return None

    def _encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        with threadpool_limits(limits=self.threads):
            if hasattr(self.model, "encode"):
                return self.model.encode(
                    texts,
                    prompt=prompt,
                    batch_size=self.batch_size,
                    progress=self.progress and len(texts) >= 256,
                )
            return self.model(texts, prompt=prompt)

    def __call__(
        self,
        texts: Sequence[str],
        prompt: str | None = None,
        dim: int | None = None,
        precision: str = "float32",
    ) -> np.ndarray:
        prompt = self._prompt(prompt)
        todo = list(dict.fromkeys(t for t in texts if (prompt, t) not in self._memo))
        if todo:
            start = time.perf_counter()
            emb = np.asarray(self._encode(todo, prompt), dtype=np.float32)
            self.seconds += time.perf_counter() - start
            if emb.shape[0] != len(todo) or emb.ndim != 2:
                raise ValueError(f"the model returned shape {emb.shape} for {len(todo)} texts")
            self.texts_encoded += len(todo)
            self._memo.update({(prompt, t): e for t, e in zip(todo, emb, strict=True)})
        out = np.stack([self._memo[(prompt, t)] for t in texts]) if texts else np.zeros((0, 0), np.float32)
        return quantize(truncate(out, dim), precision)


class _BaseView:
    """An encoder with task adapters, encoding with every adapter disabled (the stage-1 model)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder

    @property
    def prompts(self) -> dict[str, str]:
        return self.encoder.prompts_for()

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode(self, texts: Sequence[str], prompt: str | None = None, **kwargs: Any) -> np.ndarray:
        with self.encoder.adapters_disabled():
            return self.encoder.encode(texts, prompt=prompt, **kwargs)


class AdapterRouter:
    """Which encoder view scores a task type: for a model with task adapters (``model.adapters``),
    ``model.for_task(jina5.adapters.EVAL_TASK_TO_ADAPTER[type])`` when that adapter exists, else the
    model with adapters disabled (logged once); for any other model, the model itself. Each view has
    its own :class:`MemoEncode` (the same text encodes differently under different adapters)."""

    def __init__(self, model: Any, batch_size: int, progress: bool, enabled: bool = True) -> None:
        self.model = model
        self.adapters = list(getattr(model, "adapters", None) or []) if enabled else []
        self._memos: dict[str | None, MemoEncode] = {}
        self._kw = {"batch_size": batch_size, "progress": progress}

    def route(self, task_type: str) -> tuple[MemoEncode, str | None]:
        """(encode function, adapter name or None) for ``task_type``."""
        name: str | None = None
        if self.adapters:
            from jina5.adapters import adapter_for_eval_task  # imports peft: only for adapter models

            wanted = adapter_for_eval_task(task_type)
            name = wanted if wanted in self.adapters else None
            if name is None and None not in self._memos:  # say it once
                log.info(
                    "no %r adapter (adapters: %s): %s tasks use the base model",
                    wanted,
                    self.adapters,
                    task_type,
                )
        if name not in self._memos:
            view = (
                self.model
                if not self.adapters
                else (self.model.for_task(name) if name else _BaseView(self.model))
            )
            self._memos[name] = MemoEncode(view, **self._kw)
        return self._memos[name], name

    @property
    def texts_encoded(self) -> int:
        return sum(m.texts_encoded for m in self._memos.values())

    @property
    def seconds(self) -> float:
        return sum(m.seconds for m in self._memos.values())


def model_fingerprint(encoder: Any) -> str:
    """``content_fingerprint`` with the prompts included (they change every score) and the
    ``architectures`` list ignored (``save_pretrained`` rewrites it to the class that loaded the weights)."""
    return content_fingerprint(encoder, skip_config=(*VOLATILE_CONFIG, "architectures"))


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


def _full_dim(encode: Callable, model: Any) -> int:
    dim = getattr(model, "dim", None)
    if isinstance(dim, int):
        return dim
    return int(np.asarray(encode(["dimension probe"], prompt=None)).shape[-1])


# ---------------------------------------------------------------------------------------------- cache
def _cached(
    table: pd.DataFrame | None,
    fingerprint: str | None,
    task: EvalTask,
    dims: list[int],
    precisions: list[str],
) -> tuple[list[dict], str] | None:
    """The latest stored records of (fingerprint, task.key) covering every (dim, precision), or None."""
    if table is None or fingerprint is None or "task_key" not in table.columns:
        return None
    rows = table[(table["model_fingerprint"] == fingerprint) & (table["task_key"] == task.key)]
    if rows.empty:
        return None
    latest = rows.loc[rows["time"] == rows["time"].max(), "run_id"].iloc[-1]
    rows = rows[rows["run_id"] == latest]
    have = set(zip(rows["dim"].astype(int), rows["precision"], strict=True))
    if not {(d, p) for d in dims for p in precisions} <= have:
        return None
    rows = rows[rows["dim"].astype(int).isin(dims) & rows["precision"].isin(precisions)]
    keep = (
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
    )
    out = []
    for rec in rows.to_dict(orient="records"):
        r = {k: None if _isna(rec.get(k)) else rec.get(k) for k in keep}
        r["dim"] = int(r["dim"])
        out.append(r)
    return out, str(latest)


def _isna(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


# ---------------------------------------------------------------------------------------------- suite
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
        model: a ``StudentEncoder`` (or anything with its ``encode``) or ``fn(texts, prompt=None)``.
        eval_cfg: the ``eval`` config (``conf/eval/*.yaml``): dims, precisions, task blocks.
        store: a ``ResultsStore`` (or its path) to append to and to look cached results up in.
        run: run fields for the store (run_id, experiment, seed, model, config); required with a store.
        fingerprint: the model's fingerprint; default :func:`model_fingerprint` for a
            ``StudentEncoder`` (caching needs one; a plain callable is never cached).
        reuse: reuse stored results of the same (fingerprint, task key, dims, precisions).
        types: restrict to some task types; tasks: prebuilt ``build_tasks`` output.
        batch_size / progress: passed to ``encode`` (default ``eval_cfg.batch_size``, 64).
            ``eval_cfg.threads`` (default 1) caps the BLAS / OpenMP threads of the evaluators
            (scikit-learn, faiss); encoding keeps torch's thread count.
        stats: if given, filled with ``texts_encoded``, ``encode_seconds``, ``dims``, ``precisions``
            and ``tasks`` (per task: name, seconds, cached_from).

    Each record: task, dataset, language, split, metric, dim, precision, value, relative_drop
    (vs float32 at full dim), task_name, task_key, eval_seconds (the task's wall time where it was
    computed), cached_from (run_id it was reused from, or None), adapter (the task adapter that
    encoded it, None for a plain model; see :class:`AdapterRouter`).
    """
    cfg = _plain(eval_cfg)
    precisions = check_precisions(cfg.get("precisions", ["float32"]))
    if "float32" not in precisions:
        precisions = ["float32", *precisions]  # the reference of every relative drop
    if isinstance(store, str):
        store = ResultsStore(store)
    if store is not None and not run:
        raise ValueError("run_suite: a store needs run fields (run_id, experiment, seed, model)")
    router = AdapterRouter(
        model, batch_size or int(cfg.get("batch_size", 64)), progress, bool(cfg.get("route_adapters", True))
    )
    if fingerprint is None and hasattr(model, "backbone") and hasattr(model, "encoder_config"):
        fingerprint = model_fingerprint(model)
    threads = cfg.get("threads", 1)
    full = _full_dim(router.route(TASK_TYPES[0])[0], model)
    dims = eval_dims(cfg.get("dims"), full)
    todo, skipped = tasks if tasks is not None else build_tasks(cfg, types)
    table = store.read() if (store is not None and reuse and fingerprint and store.path.exists()) else None
    run_fields = {**(run or {}), "model_fingerprint": fingerprint}

    log.info("eval: %d tasks (%d skipped), dims %s, precisions %s", len(todo), len(skipped), dims, precisions)
    records: list[dict] = []
    task_log: list[dict] = []
    for n, task in enumerate(todo, start=1):
        hit = _cached(table, fingerprint, task, dims, precisions) if reuse else None
        encode, adapter = router.route(task.type)
        start, before = time.perf_counter(), router.texts_encoded
        if hit is not None:
            recs = [{**r, "cached_from": hit[1]} for r in hit[0]]
            status = f"cached (run {hit[1]})"
        else:
            # k-means / probes / faiss on these small problems: 1 thread is fastest (eval.threads)
            with threadpool_limits(limits=threads):
                recs = relative_drops(task.run(encode, dims, precisions))
            seconds = round(time.perf_counter() - start, 2)
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
            status = f"{seconds:.1f} s, {router.texts_encoded - before} texts encoded"
        main = _main_value(recs, task.type, full)
        log.info(
            "[%d/%d] %s -> %s %.4f (%s)", n, len(todo), task.describe(), MAIN_METRIC[task.type], main, status
        )
        if store is not None:
            store.append(recs, run_fields)
        records += recs
        task_log.append(
            {
                "name": task.name,
                "seconds": round(time.perf_counter() - start, 2),
                "cached_from": hit[1] if hit else None,
            }
        )
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


def _main_value(recs: list[dict], task_type: str, full: int) -> float:
    vals = [
        r["value"]
        for r in recs
        if (r["metric"], r["dim"], r["precision"]) == (MAIN_METRIC[task_type], full, "float32")
    ]
    return vals[0] if vals else float("nan")


# ---------------------------------------------------------------------------------------------- summary
SUMMARY_COLUMNS = ("score", "binary", "int8", "min_dim_score")


def _task_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per task: main metric at float32/binary/int8 full dim and float32 smallest dim."""
    rows = []
    keys = ["task", "dataset", "task_name"]
    for (task, dataset, name), g in df.groupby(keys, sort=False, dropna=False):
        g = g[g["metric"] == MAIN_METRIC.get(task, "")]
        if g.empty:
            continue
        full, small = int(g["dim"].max()), int(g["dim"].min())

        def value(dim: int, precision: str, g=g) -> float:
            v = g.loc[(g["dim"] == dim) & (g["precision"] == precision), "value"]
            return float(v.iloc[0]) if len(v) else float("nan")

        seconds = g["eval_seconds"].iloc[0] if "eval_seconds" in g.columns else float("nan")
        cached = bool(g["cached_from"].notna().any()) if "cached_from" in g.columns else False
        rows.append(
            {
                "task": task,
                "dataset": dataset,
                "language": g["language"].iloc[0],
                "task_name": name,
                "metric": MAIN_METRIC[task],
                "full_dim": full,
                "score": value(full, "float32"),
                "binary": value(full, "binary"),
                "int8": value(full, "int8"),
                "min_dim": small,
                "min_dim_score": value(small, "float32"),
                "seconds": float(seconds) if seconds is not None else float("nan"),
                "cached": cached,
            }
        )
    return pd.DataFrame(rows)


def _mean_row(
    frame: pd.DataFrame, level: str, task: str, dataset: str | None, name: str, metric: str | None
) -> dict:
    """One aggregate row: the mean of ``frame``'s value columns, its summed seconds, any-cached."""
    return {
        "level": level,
        "task": task,
        "dataset": dataset,
        "language": None,
        "task_name": name,
        "metric": metric,
        "full_dim": frame["full_dim"].iloc[0],
        "min_dim": frame["min_dim"].iloc[0],
        "seconds": frame["seconds"].sum(),
        "cached": bool(frame["cached"].any()),
        **frame[list(SUMMARY_COLUMNS)].mean().to_dict(),
    }


def summarise(records: Iterable[Mapping] | pd.DataFrame) -> pd.DataFrame:
    """Main-metric table of one run's records, with data-set means, task-type and overall averages.

    Rows (``level`` column): ``task`` (one per task), ``dataset`` (the mean over a data set's tasks,
    only where it has several, e.g. chatterbot's languages), ``type`` (mean over the task type's data
    sets, each counted once), ``overall`` (mean of the task-type averages). Value columns:
    ``score`` (float32, full dim), ``binary`` and ``int8`` (full dim), ``min_dim_score`` (float32 at
    the smallest evaluated dim ``min_dim``), ``binary_drop`` / ``int8_drop`` / ``min_dim_drop``
    = (score - value) / score, and ``seconds`` (per-task wall time; summed for averages).
    """
    df = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame([dict(r) for r in records])
    if "run_id" in df.columns and df["run_id"].nunique() > 1:
        raise ValueError(
            f"summarise takes one run's records; got runs {sorted(df['run_id'].unique())[:5]} "
            "(filter first, e.g. store.read(run_id=...))"
        )
    if df.empty:
        return pd.DataFrame(columns=["level", "task", "dataset", "language", "task_name", *SUMMARY_COLUMNS])
    if "task_name" not in df.columns:
        df["task_name"] = df["task"] + "/" + df["dataset"].astype(str) + "/" + df["language"].astype(str)
    tasks = _task_rows(df)
    tasks.insert(0, "level", "task")
    out = []
    type_rows = []
    for task_type in [t for t in TASK_TYPES if t in set(tasks["task"])] + sorted(
        set(tasks["task"]) - set(TASK_TYPES)
    ):
        t = tasks[tasks["task"] == task_type]
        datasets_rows = []
        for dataset, g in t.groupby("dataset", sort=False):
            out.append(g)
            row = _mean_row(
                g,
                "dataset",
                task_type,
                dataset,
                f"{task_type}/{dataset} (mean of {len(g)})",
                MAIN_METRIC.get(task_type),
            )
            datasets_rows.append(row)
            if len(g) > 1:
                out.append(pd.DataFrame([row]))
        d = pd.DataFrame(datasets_rows)
        type_row = _mean_row(
            d, "type", task_type, None, f"{task_type} average ({len(d)} datasets)", MAIN_METRIC.get(task_type)
        )
        type_rows.append(type_row)
        out.append(pd.DataFrame([type_row]))
    types = pd.DataFrame(type_rows)
    out.append(
        pd.DataFrame(
            [_mean_row(types, "overall", "overall", None, f"overall (mean of {len(types)} task types)", None)]
        )
    )
    table = pd.concat(out, ignore_index=True)
    for col, drop in (("binary", "binary_drop"), ("int8", "int8_drop"), ("min_dim_score", "min_dim_drop")):
        table[drop] = (table["score"] - table[col]) / table["score"]
    return table


def format_summary(table: pd.DataFrame, title: str = "") -> str:
    """The summary as fixed-width text: values x 100, drops in %, per-task seconds."""
    if table.empty:
        return f"{title}\n(no results)"
    full, small = int(table["full_dim"].iloc[0]), int(table["min_dim"].iloc[0])
    header = (
        f"{'task':44s} {'metric':10s} {'f32@' + str(full):>9s} {'bin@' + str(full):>9s} "
        f"{'int8@' + str(full):>9s} {'f32@' + str(small):>9s} {'bin drop':>9s} {'seconds':>8s}"
    )
    lines = [title, header, "-" * len(header)] if title else [header, "-" * len(header)]

    def fmt(v: Any, scale: float = 100.0, spec: str = "9.2f") -> str:
        return f"{v * scale:{spec}}" if v is not None and v == v else f"{'-':>{spec.split('.')[0]}}"

    for r in table.to_dict(orient="records"):
        if r["level"] == "overall":
            lines.append("=" * len(header))
        label = r["task_name"] if r["level"] == "task" else f"== {r['task_name']}"
        label += " *" if r["cached"] and r["level"] == "task" else ""
        lines.append(
            f"{label[:44]:44s} {str(r['metric'] or ''):10s} {fmt(r['score'])} {fmt(r['binary'])} "
            f"{fmt(r['int8'])} {fmt(r['min_dim_score'])} {fmt(r['binary_drop'], 100, '8.1f')}% "
            f"{fmt(r['seconds'], 1, '8.1f')}"
        )
        if r["level"] == "type":
            lines.append("")
    if table["cached"].any():
        lines.append("* reused from the results store (seconds: where it was computed)")
    return "\n".join(lines)


def format_task_list(tasks: Sequence[EvalTask], skipped: Sequence[SkippedTask]) -> str:
    """The task list: every task with its input sizes, then every skipped task with its reason."""
    lines = [f"  {t.describe()}" for t in tasks]
    lines += [f"  SKIPPED {s.name}: {s.reason}" for s in skipped]
    return "\n".join(lines)
