"""Which row a table compares the others with, and each other row's verdict against it.

The reference (:func:`reference_row`): the layout's ``compare[0]`` or ``reference``, else the best trained
row by ``rank_by``. For every other row and value, the difference delta = row - reference gets a paired
hierarchical bootstrap interval over seeds and test items (:class:`Significance`, :mod:`jina5.eval.bootstrap`:
``resamples`` resamples, the 95% percentile interval), and the verdict ``better`` / ``worse`` only when the interval
excludes 0, else ``tie``. A derived value is the signed sum of its terms (:func:`value_terms`:
``binary_drop/<level>`` = binary - float32). A row whose runs have no per-item scores (an older store)
gets ``no CI (re-evaluate)`` and falls back to the seed-std rule (:func:`ties`): a ``tie`` when
|mean_row - mean_ref| < max(std_row, std_ref).
"""

from __future__ import annotations

import math

import pandas as pd

from jina5.eval.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Interval,
    MissingItems,
    Replicates,
    difference,
    interval,
    row_replicates,
    run_items,
)
from jina5.eval.store import ResultsStore
from jina5.eval.summary import seed_keys
from jina5.report.sweep_spec import experiment_name, reference_names


def ties(table: pd.DataFrame, col: str = "float/overall", reference: str | None = None) -> dict[str, str]:
    """The seed-std rule: mark the reference ``reference`` (default the best row by ``col``: ``best``),
    and each other row ``tie`` when its mean of ``col`` is within the larger of its and the reference's
    std of the reference's, else ''."""
    if (
        table.empty
        or col not in table
        or (reference is not None and reference not in set(table["experiment"]))
    ):
        return {}
    if reference is None:
        ref, mark = table.loc[table[col].idxmax()], "best"
    else:
        ref, mark = table[table["experiment"] == reference].iloc[0], "reference"
    out = {}
    for _, r in table.iterrows():
        spreads = [
            v for v in (r.get(f"{col}_std"), ref.get(f"{col}_std")) if v is not None and not math.isnan(v)
        ]
        spread = max(spreads) if spreads else math.nan
        if r["experiment"] == ref["experiment"]:
            out[r["experiment"]] = mark
        elif not math.isnan(spread) and abs(ref[col] - r[col]) < spread:
            out[r["experiment"]] = "tie"
        else:
            out[r["experiment"]] = ""
    return out


# The (dim, precision) of each prefix of run_summary's value keys (dim None: the run's full dim);
# ``binary_drop/<level>`` is binary - float32 of that level; other values (train_seconds) have no interval.
VALUE_SETTINGS = {
    "float": (None, "float32"),
    "binary": (None, "binary"),
    "int8": (None, "int8"),
    "dim128": (128, "float32"),
}


def value_terms(key: str) -> list[tuple[int, int | None, str, str]] | None:
    """(sign, dim, precision, level) terms whose signed sum is ``run_summary``'s value ``key``; None for
    a value without per-item scores."""
    prefix, _, level = key.partition("/")
    if prefix == "binary_drop" and level:
        return [(1, None, "binary", level), (-1, None, "float32", level)]
    if prefix in VALUE_SETTINGS and level:
        return [(1, *VALUE_SETTINGS[prefix], level)]
    return None


class Significance:
    """Paired bootstrap intervals between the rows of ``df`` (latest runs of ``store``); each row's
    replicates at a (dim, precision) are computed once (:func:`jina5.eval.bootstrap.row_replicates`)."""

    def __init__(
        self,
        store: ResultsStore,
        df: pd.DataFrame,
        resamples: int = DEFAULT_RESAMPLES,
        seed: int = DEFAULT_SEED,
    ) -> None:
        self.store, self.df, self.resamples, self.seed = store, df, resamples, seed
        self._rows: dict[tuple, Replicates | MissingItems] = {}

    def replicates(self, experiment: str, dim: int | None, precision: str) -> Replicates:
        """The row's replicates (raises :class:`MissingItems`)."""
        key = (experiment, dim, precision)
        if key not in self._rows:
            runs = self.df[self.df["experiment"] == experiment]
            try:
                seeds = [
                    run_items(self.store, g, dim, precision)
                    for _, g in runs.groupby(seed_keys(runs["seed"]), sort=True)
                ]
                self._rows[key] = row_replicates(seeds, self.resamples, self.seed)
            except MissingItems as e:
                self._rows[key] = e
        got = self._rows[key]
        if isinstance(got, MissingItems):
            raise got
        return got

    def interval(self, candidate: str, reference: str, key: str) -> Interval | str:
        """The interval of ``candidate`` - ``reference`` of the value ``key``, or why there is none
        (``no CI (...)``)."""
        terms = value_terms(key)
        if terms is None:
            return "no CI (not an item score)"
        try:
            total = 0.0
            for sign, dim, precision, level in terms:
                diff = difference(
                    self.replicates(candidate, dim, precision), self.replicates(reference, dim, precision)
                )
                if level not in diff:
                    raise MissingItems(f"no {level} results", "not evaluated")
                total = total + sign * diff[level]
        except MissingItems as e:
            return f"no CI ({e.hint})"
        return interval(total)

    def describe(self) -> str:
        """The method, as the tables' notes and summary.json name it."""
        return (
            f"paired hierarchical bootstrap over seeds and test items, {self.resamples} resamples "
            f"(seed {self.seed}), 95% percentile interval"
        )


def interval_json(got: Interval | str) -> dict:
    """An interval for summary.json (6 decimals), or ``{"missing": why}``."""
    if isinstance(got, str):
        return {"missing": got}
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in got.as_dict().items()}


def reference_row(spec: dict, layout: dict, trained: pd.DataFrame) -> tuple[str | None, bool]:
    """(the row a table's trained rows are compared with, whether it is the ``rank_by`` best): the
    layout's ``compare[0]`` or ``reference`` (an experiment config or a row label), else the best
    trained row by ``rank_by``, else the first trained row."""
    if layout.get("compare"):
        return layout["compare"][0], False
    if layout.get("reference"):
        name = layout["reference"]
        return (experiment_name(name) if name in spec.get("experiments", []) else name), False
    if trained.empty:
        return None, False
    rank_by = layout.get("rank_by")
    if rank_by in trained and trained[rank_by].notna().any():
        return str(trained.loc[trained[rank_by].idxmax(), "experiment"]), True
    return str(trained["experiment"].iloc[0]), False


def interval_keys(layout: dict) -> list[str]:
    """The values that get a ``Δ [95% CI]`` column: the layout's ``intervals``, default its ``rank_by``."""
    if "intervals" in layout:
        return list(layout["intervals"] or [])
    return [layout["rank_by"]] if layout.get("rank_by") else []


def table_intervals(
    table: pd.DataFrame, spec: dict, layout: dict, significance: Significance
) -> tuple[str | None, bool, dict[str, dict[str, Interval | str]]]:
    """(reference row, whether it is the rank_by best, {candidate row: {value: interval or why none}})
    of a sweep's main table: every trained row (``compare``: its candidate) against the reference, for
    every layout column and ``intervals`` value that has per-item scores."""
    trained = table[~table["experiment"].isin(reference_names(spec))]
    reference, best = reference_row(spec, layout, trained)
    present = set(table["experiment"])
    if reference not in present:
        return reference, best, {}
    candidates = [layout["compare"][1]] if layout.get("compare") else list(trained["experiment"])
    keys = [c for c in dict.fromkeys([*layout["columns"].values(), *interval_keys(layout)]) if value_terms(c)]
    rows = {
        exp: {key: significance.interval(exp, reference, key) for key in keys}
        for exp in candidates
        if exp in present and exp != reference
    }
    return reference, best, rows
