"""The ablation figures, drawn from the frames of :mod:`jina5.report.aggregate`: overall score against
Matryoshka dim (``truncation_curve``), float32 vs int8 vs binary per experiment (``precision_points``) and
dev retrieval against training step (``dev_curves``). Each function returns its figure and, given a
``path``, saves it there.

The figures are plain :class:`matplotlib.figure.Figure` objects, not pyplot's: drawing and saving them
needs no backend, so importing this module leaves the caller's backend alone (a notebook keeps its inline
one and shows a figure with ``display(fig)``; a script or a test needs no ``matplotlib.use``) and no figure
is left open in pyplot's registry.

Shared rules: every value x100; where a row has several seeds, a band (lines) or error bars (points)
of ± the seed std; one colour per experiment in every figure of a sweep (:func:`experiment_colours`);
points and lines, never bars from 0, in y limits fitted to the values shown (:func:`fit_ylim`); the
evaluated dims themselves as the truncation figure's x ticks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

# the rows that frame a sweep's trained regimes keep one colour everywhere
REFERENCE_COLOURS = {"teacher": "#000000", "untrained_student": "#7f7f7f", "stage1": "#8c564b"}
PRECISIONS = (("float32", "float/overall"), ("int8", "int8/overall"), ("binary", "binary/overall"))


def experiment_colours(names: Iterable[str]) -> dict[str, str]:
    """{experiment: hex colour}, fixed for every figure of a sweep (pass the sweep's rows, in order): the
    references of :data:`REFERENCE_COLOURS` theirs, every other row the next colour of matplotlib's
    ``tab10`` (``tab20`` beyond 8 rows) without its grey and brown, cycling past the end."""
    names = list(dict.fromkeys(names))
    trained = [n for n in names if n not in REFERENCE_COLOURS]
    reserved = set(REFERENCE_COLOURS.values())
    palette = [
        to_hex(c)
        for c in matplotlib.colormaps["tab10" if len(trained) <= 8 else "tab20"].colors
        if to_hex(c) not in reserved and to_hex(c) not in ("#c49c94", "#c7c7c7")  # tab20's light brown/grey
    ]
    colours = {n: REFERENCE_COLOURS[n] for n in names if n in REFERENCE_COLOURS}
    colours.update({n: palette[k % len(palette)] for k, n in enumerate(trained)})
    return colours


def fit_ylim(ax: Axes, values: Iterable[float], pad: float = 0.1, min_pad: float = 0.5) -> None:
    """y limits [min - p, max + p] of the finite ``values`` (x100 scores, bands included), p = ``pad`` x
    their range, at least ``min_pad`` points: the differences fill the plot (no axis forced to 0)."""
    ys = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if ys.size:
        low, high = float(ys.min()), float(ys.max())
        margin = max(pad * (high - low), min_pad)
        ax.set_ylim(low - margin, high + margin)


def new_axes() -> tuple[Figure, Axes]:
    """A 6 x 4 inch figure of one axes, outside pyplot (see the module's docstring)."""
    fig = Figure(figsize=(6, 4))
    return fig, fig.subplots()


def finish(fig: Figure, ax: Axes, xlabel: str, ylabel: str, path: Path | None) -> Figure:
    """Labels, legend and grid; saved to ``path`` (120 dpi) unless it is None."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def seed_std(spread: pd.DataFrame | None, exp: str, index: pd.Index) -> np.ndarray | None:
    """Row ``exp`` of a ``stat="std"`` frame (x100) on ``index``, or None where no value has several seeds."""
    if spread is None or exp not in spread.index:
        return None
    std = spread.loc[exp].reindex(index).to_numpy(dtype=float) * 100
    return std if np.isfinite(std).any() else None


def line_with_band(ax: Axes, row: pd.Series, std: np.ndarray | None, colour: str, **kw) -> list[float]:
    """A line of ``row`` x100 and, where ``std`` is known (several seeds), a band of mean ± std in the
    same colour; returns every y drawn (for :func:`fit_ylim`)."""
    mean = row.to_numpy(dtype=float) * 100
    ax.plot(row.index, mean, color=colour, **kw)
    if std is None:
        return list(mean)
    low, high = mean - np.nan_to_num(std), mean + np.nan_to_num(std)
    ax.fill_between(row.index, low, high, color=colour, alpha=0.2, linewidth=0)
    return [*mean, *low, *high]


def truncation_curve(
    dims: pd.DataFrame,
    path: Path | None = None,
    precision: str = "float32",
    spread: pd.DataFrame | None = None,
    colours: Mapping[str, str] | None = None,
) -> Figure:
    """Overall score against Matryoshka dim, one line per row of a ``dim_table`` (seed mean); a band of
    ± the seed std (``spread``: the ``dim_table`` of ``stat="std"``) where a row has several seeds. The
    x ticks are the evaluated dims (e.g. 32, 64, 128, 256, 384 and the teacher's 768), on a log axis."""
    colours = colours or experiment_colours(dims.index)
    fig, ax = new_axes()
    ys: list[float] = []
    evaluated: set[int] = set()
    for exp, row in dims.iterrows():
        row = row.dropna()
        evaluated |= {int(d) for d in row.index}
        std = seed_std(spread, exp, row.index)
        ys += line_with_band(ax, row, std, colours[exp], marker="o", label=exp)
    ax.set_xscale("log", base=2)
    ticks = sorted(evaluated)
    ax.set_xticks(ticks, [str(d) for d in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    fit_ylim(ax, ys)
    return finish(
        fig,
        ax,
        "embedding dim (Matryoshka truncation)",
        f"overall average ({precision}) x 100 (± seed std)",
        path,
    )


def precision_points(
    table: pd.DataFrame, path: Path | None = None, colours: Mapping[str, str] | None = None
) -> Figure:
    """Float32 vs int8 vs binary overall average per experiment (a ``regime_table``, seed mean): points
    joined by a line per experiment, error bars ± the seed std where it has several seeds. A precision
    no row was evaluated at is left out."""
    colours = colours or experiment_colours(table["experiment"])
    shown = [(name, col) for name, col in PRECISIONS if col in table and table[col].notna().any()]
    fig, ax = new_axes()
    ys: list[float] = []
    width = 0.3  # experiments side by side within a precision, so their error bars do not overlap
    offsets = np.linspace(-width / 2, width / 2, len(table)) if len(table) > 1 else [0.0]
    for offset, (_, r) in zip(offsets, table.iterrows(), strict=True):
        mean = np.array([r[col] for _, col in shown], dtype=float) * 100
        std = np.array([r.get(f"{col}_std", np.nan) for _, col in shown], dtype=float) * 100
        xs = np.arange(len(shown)) + offset
        several = np.isfinite(std).any()  # a row of one seed has no std: no error bar
        err = np.nan_to_num(std)
        colour = colours[r["experiment"]]
        ax.errorbar(
            xs,
            mean,
            yerr=err if several else None,
            color=colour,
            marker="o",
            capsize=3,
            label=r["experiment"],
        )
        ys += [*(mean - err), *(mean + err)]
    ax.set_xticks(range(len(shown)), [name for name, _ in shown])
    fit_ylim(ax, ys)
    return finish(fig, ax, "precision (full dim)", "overall average x 100 (± seed std)", path)


def dev_curves(
    steps: pd.DataFrame,
    teacher: float | None,
    path: Path | None = None,
    metric: str = "ndcg@10",
    spread: pd.DataFrame | None = None,
    colours: Mapping[str, str] | None = None,
) -> Figure:
    """Dev-set retrieval score against training step, one line per row of a ``curve_table`` (seed
    mean) with a band of ± the seed std (``spread``) where it has several seeds; the teacher's level
    dashed, in the teacher's colour."""
    colours = colours or experiment_colours([*steps.index, "teacher"])
    fig, ax = new_axes()
    ys: list[float] = []
    for exp, row in steps.iterrows():
        row = row.dropna()
        ys += line_with_band(ax, row, seed_std(spread, exp, row.index), colours[exp], marker=".", label=exp)
    if teacher is not None:
        colour = colours.get("teacher", REFERENCE_COLOURS["teacher"])
        ax.axhline(teacher * 100, color=colour, linestyle="--", label="teacher")
        ys.append(teacher * 100)
    fit_ylim(ax, ys)
    return finish(fig, ax, "training step", f"dev {metric} x 100 (± seed std)", path)


def figure_links(paths: Sequence[Path]) -> str:
    """The markdown line that shows every figure of ``paths`` (file names, relative to summary.md)."""
    return " ".join(f"![{Path(p).stem.replace('_', ' ')}]({Path(p).name})" for p in paths)
