"""The markdown of summary.md: per-experiment tables of the seed mean ± std (x100), a two-experiment
comparison per value, wide (row x dim or step) tables, a sweep's main table with its ``Δ [95% CI]`` and
verdict columns (:mod:`jina5.report.verdicts`), and the evaluation-suite line under the title.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from jina5.eval.bootstrap import Interval
from jina5.report.verdicts import interval_keys, ties


def fmt(mean: float, std: float, scale: float = 100.0) -> str:
    """``mean`` x ``scale`` to 2 decimals, `` ± std`` x ``scale`` where ``std`` is known; ``-`` for no mean."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean * scale:.2f}" + ("" if std is None or math.isnan(std) else f" ± {std * scale:.2f}")


def markdown(
    table: pd.DataFrame, columns: Sequence[tuple[str, str]], extra: dict[str, dict[str, str]] | None = None
) -> str:
    """A markdown table: one row per experiment; ``columns`` = (header, value column)."""
    extra = extra or {}
    heads = ["experiment", "seeds", *[h for h, _ in columns], *extra]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for _, r in table.iterrows():
        cells = [r["experiment"], str(int(r["seeds"]))]
        for _, col in columns:
            if col == "train_seconds":
                cells.append("-" if math.isnan(r[col]) else f"{r[col]:.0f}")
            else:
                cells.append(fmt(r.get(col, math.nan), r.get(f"{col}_std", math.nan)))
        cells += [extra[k].get(r["experiment"], "") for k in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_markdown(
    table: pd.DataFrame,
    columns: Sequence[tuple[str, str]],
    reference: str,
    candidate: str,
    intervals: dict[str, Interval | str] | None = None,
) -> str:
    """A markdown table of two experiments of ``table``: one row per (header, value column), with the
    ``reference``'s and the ``candidate``'s seed mean (± std) and ``delta`` = candidate - reference;
    with ``intervals`` ({value column: interval or why none}), its ``95% CI`` and ``verdict`` too."""
    rows = table.set_index("experiment").reindex([reference, candidate])
    heads = [
        "task type",
        reference,
        candidate,
        "delta",
        *(["95% CI", "verdict"] if intervals is not None else []),
    ]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for header, col in columns:
        (ref, cand), (ref_std, cand_std) = (
            rows.get(c, pd.Series(math.nan, index=rows.index)) for c in (col, f"{col}_std")
        )
        delta = cand - ref
        cells = [
            header,
            fmt(ref, ref_std),
            fmt(cand, cand_std),
            "-" if math.isnan(delta) else f"{delta * 100:+.2f}",
        ]
        if intervals is not None:
            got = intervals.get(col, "")
            if isinstance(got, Interval):
                cells += [f"[{got.low * 100:+.2f}, {got.high * 100:+.2f}]", got.verdict]
            else:
                cells += [got, ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wide_markdown(table: pd.DataFrame, corner: str, every: int = 1) -> str:
    """A markdown table of a (row label x numeric column) frame, values x100; every ``every``-th column
    (and the last) shown."""
    cols = [c for i, c in enumerate(table.columns) if i % every == 0 or i == len(table.columns) - 1]
    lines = ["| " + " | ".join([corner, *map(str, cols)]) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, row in table.iterrows():
        lines.append("| " + " | ".join([str(name), *(fmt(row[c], math.nan) for c in cols)]) + " |")
    return "\n".join(lines)


def interval_cell(got: Interval | str | None) -> str:
    """A ``Δ [95% CI]`` cell: the interval's :meth:`Interval.format`, or why there is none."""
    return got.format() if isinstance(got, Interval) else (got or "")


def main_table(
    table: pd.DataFrame,
    layout: dict,
    references: Sequence[str],
    reference: str | None = None,
    is_best: bool = False,
    intervals: dict[str, dict[str, Interval | str]] | None = None,
    method: str = "",
) -> list[str]:
    """The lines of a sweep's main table (``layout``: sweeps.yaml's ``table``); ``references`` (the
    baselines) frame the trained rows. With ``intervals`` (:func:`table_intervals`): a ``Δ <value>
    [95% CI]`` column per :func:`interval_keys` value and the verdict against ``reference`` (``vs best``
    when it is the rank_by best): the interval's where there is one, else the seed-std rule (:func:`ties`)."""
    columns = list(layout["columns"].items())
    intervals = intervals or {}
    note = []
    if layout.get("compare"):
        candidate = layout["compare"][1]
        body = comparison_markdown(table, columns, *layout["compare"], intervals.get(candidate, {}))
        note = [f"95% CI: {method}; `better` / `worse` only when it excludes 0, else `tie`.", ""]
    else:
        extra: dict[str, dict[str, str]] = {}
        headers = {col: header for header, col in columns}
        keys = interval_keys(layout)
        for key in keys:
            cells = {exp: interval_cell(got.get(key)) for exp, got in intervals.items()}
            extra[f"Δ {headers.get(key, key)} [95% CI]"] = {
                **cells,
                **({reference: "(reference)"} if reference else {}),
            }
        primary = layout.get("rank_by") or next(iter(keys), None)
        if primary and reference:
            rows = table[~table["experiment"].isin(references) | (table["experiment"] == reference)]
            fallback = ties(rows, primary, None if is_best else reference)
            extra["vs best" if is_best else f"vs {reference}"] = {
                exp: got.verdict if isinstance(got, Interval) else fallback.get(exp, "")
                for exp, got in {e: intervals.get(e, {}).get(primary) for e in fallback}.items()
            }
        if layout.get("paper"):
            extra["paper"] = layout["paper"]
        body = markdown(table, columns, extra)
        if keys and reference:
            note = [
                f"Δ: the row minus {reference} (x100), [95% CI]: {method}. A row is `better` / `worse` only"
                " when the interval excludes 0, else a `tie`; `no CI (re-evaluate)`: a run in the store has no"
                " per-item scores (its verdict falls back to the seed-std rule: a tie within the larger std).",
                "",
            ]
    return [layout["caption"], "", body, "", *note]


def suite_note(stored: pd.DataFrame, suite: str, rows: Sequence[str]) -> str:
    """The line under a table's title: the evaluation suite it reads, and how many runs of its ``rows`` in
    the store (``stored``, with its ``suite`` column) belong to other suites and are left out."""
    line = f"Evaluation suite: `{suite}` (every row is a run of this suite; suites are never mixed)."
    runs = stored[stored["experiment"].isin(rows)].drop_duplicates("run_id")
    others = runs[runs["suite"].notna() & (runs["suite"] != suite)]["suite"].value_counts()
    if len(others):
        left = ", ".join(f"{n} run(s) of `{other}`" for other, n in sorted(others.items()))
        line += f" Left out: {left} (`python -m jina5.report.tables --suite <suite>` tabulates another)."
    return line
