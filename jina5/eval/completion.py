"""Complete or absent: an evaluation run is visible to tables, the notebook, the model card and the
suite's cache only once it completed; a partial run is reported as partial and resumed, never averaged.

**Markers.** The suite (:func:`jina5.eval.suite.run_suite`) files two lines per run in the store's run
sidecar ``results.runs.jsonl`` (:class:`jina5.eval.store.ResultsStore`), around its metric lines (one
append per task)::

    {"run_id", "time", "config", "evaluation": {"status": "started", "tasks": [task names]}}     before the first task
    {"run_id", "time", "config", "evaluation": {"status": "complete", "resumes": [run ids]}}     after the last task

A run with a start line and no completion line is **partial**: it was killed, it failed (an exception,
a full disk) or it is still running. Its lacking tasks are the started line's tasks without a metric line.
``resumes`` names the partial runs that the completed run took its stored tasks from
(:func:`resumable`); they are **resumed** and stay hidden without a warning.

**Stores written before the markers** (no ``evaluation`` line for a run): a run scored on the held-out
suite (its config has an ``eval`` block, its rows tasks of :data:`TASK_TYPES`) is complete when it holds
every task, ``task/dataset/language``, that any run of the store with the same suite and evaluation
settings (:func:`evaluation_settings`) holds; one lacking some is partial. Any other unmarked run
(training records, MTEB scores before the markers, hand-written records) is complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from jina5.eval.suite_names import explicit_suite_id, settings_fingerprint
from jina5.eval.task_types import TASK_TYPES

STARTED, COMPLETE = "started", "complete"


@dataclass(frozen=True)
class PartialRun:
    """A run without its completion record: ``stored`` tasks have records, ``lacking`` ones (in the order
    planned) do not; ``resumed_by`` the completed run that took its tasks over, if any; ``legacy``: told
    by the rule for stores written before the markers (module docstring)."""

    run_id: str
    experiment: Any
    seed: int | None
    model: Any
    fingerprint: Any
    settings: str | None
    stored: tuple[str, ...]
    lacking: tuple[str, ...]
    resumed_by: str | None = None
    legacy: bool = False

    def describe(self, store: Any) -> str:
        """One warning line naming the run, its tasks and the way out."""
        lacking = ", ".join(self.lacking) if self.lacking else "(its task list was not filed)"
        why = (
            "lacks tasks that other runs with its evaluation settings have (a store written before "
            "completion records)"
            if self.legacy
            else "has no completion record: it was killed or failed, or it is still running"
        )
        return (
            f"{store}: run {self.run_id} (experiment {self.experiment}, model {self.model}) is a partial "
            f"evaluation: it {why}; {len(self.stored)} task(s) stored, lacking {len(self.lacking)}: {lacking}. "
            "It is left out of tables, the notebook and the cache. To complete it, rerun the evaluation that "
            f"wrote it (model={self.model}, the same label, seed and eval settings): it resumes the stored "
            "tasks instead of recomputing them"
        )


def evaluation_settings(config: Any) -> str | None:
    """``<suite id>:<settings fingerprint>`` of a run config's ``eval`` block
    (:mod:`jina5.eval.suite_names`; suite id None for a block without ``suite``); None without a block."""
    eval_cfg = config.get("eval") if isinstance(config, Mapping) else None
    if not isinstance(eval_cfg, Mapping) or not eval_cfg:
        return None
    return f"{explicit_suite_id(eval_cfg)}:{settings_fingerprint(eval_cfg)}"


def seed_value(seed: Any) -> int | None:
    """A stored seed as an int, None for a baseline (None or NaN)."""
    return None if pd.isna(seed) else int(seed)


def _legacy_task(rows: pd.DataFrame) -> pd.Series:
    """``task/dataset/language`` of each row (fields every store has)."""
    return rows["task"].astype(str) + "/" + rows["dataset"].astype(str) + "/" + rows["language"].astype(str)


def partial_runs(df: pd.DataFrame, marks: Mapping[str, list[Mapping[str, Any]]]) -> dict[str, PartialRun]:
    """{run_id: PartialRun} of every partial run of a store (module docstring). ``df``: the store's rows
    (with their ``config``); ``marks``: {run_id: the ``evaluation`` entries of its sidecar lines}."""
    complete = {r for r, ms in marks.items() if any(m.get("status") == COMPLETE for m in ms)}
    resumed_by = {p: r for r in complete for m in marks[r] for p in m.get("resumes") or []}
    meta = {str(r["run_id"]): r for r in df.drop_duplicates("run_id").to_dict(orient="records")}

    def partial(run_id: str, stored: Iterable[str], lacking: Iterable[str], legacy: bool) -> PartialRun:
        row = meta.get(run_id, {})
        return PartialRun(
            run_id=run_id,
            experiment=row.get("experiment"),
            seed=seed_value(row.get("seed")),
            model=row.get("model"),
            fingerprint=row.get("model_fingerprint"),
            settings=evaluation_settings(row.get("config")),
            stored=tuple(stored),
            lacking=tuple(lacking),
            resumed_by=resumed_by.get(run_id),
            legacy=legacy,
        )

    held_out = df[df["task"].isin(TASK_TYPES)] if not df.empty else df
    names: dict[str, set[str]] = {}
    if "task_name" in held_out.columns:
        named = held_out.dropna(subset=["task_name"])
        names = {str(r): set(g) for r, g in named.groupby("run_id")["task_name"]}
    out: dict[str, PartialRun] = {}
    for run_id, ms in marks.items():
        if run_id in complete:
            continue
        planned = dict.fromkeys(t for m in ms if m.get("status") == STARTED for t in m.get("tasks") or [])
        have = names.get(run_id, set())
        out[run_id] = partial(run_id, sorted(have), [t for t in planned if t not in have], legacy=False)

    # stores written before the markers: the tasks of every run with the same evaluation settings
    settings = {r: evaluation_settings(row.get("config")) for r, row in meta.items()}
    tasks = held_out.assign(
        _task=_legacy_task(held_out), _settings=held_out["run_id"].astype(str).map(settings)
    )
    tasks = tasks.dropna(subset=["_settings"])
    expected = tasks.groupby("_settings")["_task"].agg(set).to_dict()
    for (run_id, key), run_tasks in tasks.groupby(["run_id", "_settings"]):
        lacking = sorted(expected[key] - set(run_tasks["_task"]))
        if str(run_id) not in marks and lacking:
            out[str(run_id)] = partial(str(run_id), sorted(set(run_tasks["_task"])), lacking, legacy=True)
    return out


def resumable(
    partials: Mapping[str, PartialRun], fingerprint: Any, run: Mapping[str, Any], settings: str | None
) -> list[str]:
    """The partial runs (not yet resumed) that a new run of the same model (``fingerprint``), ``run``'s
    experiment and seed and the evaluation ``settings`` (:func:`evaluation_settings`) continues."""
    seed = seed_value(run.get("seed"))
    return [
        p.run_id
        for p in partials.values()
        if p.resumed_by is None
        and p.stored
        and p.fingerprint == fingerprint
        and p.experiment == run.get("experiment")
        and p.seed == seed
        and p.settings == settings
    ]
