"""The sweep figures, checked on the matplotlib objects: seed spread, dim ticks, one colour per experiment,
y limits fitted to the values, and every figure linked from summary.md."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
from helpers import write_golden_store
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex

from jina5.report import figures, tables

ROOT = Path(__file__).resolve().parents[3]

DIMS = [32, 64, 128, 256, 384]


def line_colours(fig) -> dict[str, str]:
    """{legend label: hex colour} of a figure's lines and error-bar series."""
    ax = fig.axes[0]
    out = {
        ln.get_label(): to_hex(ln.get_color()) for ln in ax.get_lines() if not ln.get_label().startswith("_")
    }
    out.update({c.get_label(): to_hex(c.lines[0].get_color()) for c in ax.containers})
    return out


def test_truncation_ticks_are_the_evaluated_dims_with_a_seed_band(tmp_path):
    means = pd.DataFrame(
        {d: [0.50 + d / 10_000, 0.60 + d / 10_000] for d in DIMS}, index=["combined", "teacher"]
    )
    means[768] = [math.nan, 0.70]  # the teacher's full dim
    spread = pd.DataFrame({d: [0.01, math.nan] for d in [*DIMS, 768]}, index=["combined", "teacher"])
    fig = figures.truncation_curve(means, tmp_path / "figure.png", spread=spread)
    ax = fig.axes[0]
    assert [int(t) for t in ax.get_xticks()] == [*DIMS, 768]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(d) for d in [*DIMS, 768]]
    assert ax.get_xaxis().get_minor_locator().tick_values(32, 768) == []  # no 2^k minor ticks
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1  # combined has two seeds, the teacher one: no band
    assert to_hex(bands[0].get_facecolor()[0][:3]) == line_colours(fig)["combined"]
    low, high = ax.get_ylim()
    assert 45 < low < 50.3 - 1 and 77 > high > 70.0  # the values (50.3-70.0, band 49.3) fill the plot


def test_precision_points_start_where_the_values_are_with_error_bars_over_seeds(tmp_path):
    table = pd.DataFrame(
        [
            {"experiment": "combined", "float/overall": 0.52, "float/overall_std": 0.01,
             "binary/overall": 0.40, "binary/overall_std": 0.02, "int8/overall": math.nan},
            {"experiment": "teacher", "float/overall": 0.70, "float/overall_std": math.nan,
             "binary/overall": 0.55, "binary/overall_std": math.nan, "int8/overall": math.nan},
        ]
    )  # fmt: skip
    fig = figures.precision_points(table, tmp_path / "figure.png")
    ax = fig.axes[0]
    assert not ax.patches  # no bars
    assert [t.get_text() for t in ax.get_xticklabels()] == ["float32", "binary"]  # int8 not evaluated
    bars = {c.get_label(): c.has_yerr for c in ax.containers}
    assert bars == {"combined": True, "teacher": False}
    low, high = ax.get_ylim()
    assert 30 < low < 38 and 70 < high < 75


def test_one_colour_per_experiment_in_every_figure_of_a_sweep(tmp_path, monkeypatch):
    store = tmp_path / "results.jsonl"
    write_golden_store(store)
    drawn = {}

    def recording(draw):
        def wrapped(*args, **kwargs):
            path = next(a for a in [*args, *kwargs.values()] if isinstance(a, Path))
            drawn[path.name] = draw(*args, **kwargs)
            return drawn[path.name]

        return wrapped

    for name in ("truncation_curve", "precision_points", "dev_curves"):
        monkeypatch.setattr(tables, name, recording(getattr(tables, name)))
    out = tmp_path / "default"
    tables.build(store, "default", out, resamples=20)
    assert set(drawn) == {"truncation.png", "truncation_binary.png", "precision.png", "dev_curves.png"}
    colours = {name: line_colours(fig) for name, fig in drawn.items()}
    experiments = {"teacher", "untrained_student", "pure_distill", "pure_contrastive", "combined"}
    for name in ("truncation.png", "truncation_binary.png", "precision.png"):
        assert set(colours[name]) == experiments, name
    every: dict[str, set[str]] = {}
    for got in colours.values():
        for exp, colour in got.items():
            every.setdefault(exp, set()).add(colour)
    assert all(len(c) == 1 for c in every.values()), every  # the same colour in every figure
    assert len({c.pop() for c in every.values()}) == len(every)  # and no two experiments share one
    for fig in drawn.values():
        assert fig.axes[0].get_ylim()[0] > 5  # nothing starts at 0 (every value here is above 15)
    # the golden store has two seeds of combined: its band / error bars are drawn
    assert any(isinstance(c, PolyCollection) for c in drawn["truncation.png"].axes[0].collections)
    assert {c.get_label(): c.has_yerr for c in drawn["precision.png"].axes[0].containers}["combined"]
    assert [int(t) for t in drawn["truncation.png"].axes[0].get_xticks()] == [128, 384]


@pytest.mark.parametrize("sweep", ["default", "figure3", "stage2"])
def test_summary_links_every_figure_it_writes(tmp_path, sweep):
    store = tmp_path / "results.jsonl"
    write_golden_store(store)
    out = tmp_path / sweep
    tables.build(store, sweep, out, resamples=20)
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", (out / "summary.md").read_text())
    written = sorted(p.name for p in out.glob("*.png"))
    assert written and sorted(linked) == written
