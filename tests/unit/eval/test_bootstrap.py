"""Paired bootstrap (jina5.eval.bootstrap): hand-computed and known-answer intervals, shared resamples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import ITEM_TASKS, MAIN_METRICS, synthetic_items

from jina5.eval import bootstrap
from jina5.eval.bootstrap import (
    Interval,
    MissingItems,
    aggregate,
    interval,
    paired_intervals,
    resample_counts,
    row_replicates,
)
from jina5.eval.items import ItemScores, classification_items, retrieval_items, sts_items
from jina5.eval.summary import type_averages

NEWS = ("retrieval", "news", None, "test")
BBC = ("classification", "bbc", None, "test")


def texts(n: int, prefix: str = "q") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def suite(quality: float, model: str) -> dict[tuple, ItemScores]:
    """A run's items on the synthetic suite of tests/helpers.py (chatterbot's two languages included)."""
    return {
        (t, d, lang, "test"): synthetic_items(t, d, lang, n, quality, model) for t, d, lang, n in ITEM_TASKS
    }


def test_resample_counts_draw_n_items_with_replacement_reproducibly():
    counts = resample_counts(7, 50, 0, "retrieval/news")
    assert counts.shape == (50, 7) and (counts.sum(axis=1) == 7).all() and (counts >= 0).all()
    assert not counts.flags.writeable
    # the draws of resample b do not depend on how many resamples there are (a prefix of the stream)
    np.testing.assert_array_equal(resample_counts(7, 10, 0, "retrieval/news"), counts[:10])
    assert not np.array_equal(resample_counts(7, 50, 0, "retrieval/bbc"), counts)  # per task
    assert not np.array_equal(resample_counts(7, 50, 1, "retrieval/news"), counts)  # per seed
    # each item is drawn n / n times on average
    assert resample_counts(7, 4000, 0, "x").mean() == pytest.approx(1.0, abs=0.02)


def test_interval_is_the_percentile_interval_of_the_resampled_differences():
    # column 0 is the full sample; numpy's linear percentiles of the other four by hand:
    # sorted [-0.5, 0, 0.1, 0.5]: 2.5% at position 0.075 -> -0.5 + 0.075 * 0.5; 97.5% at 2.925
    got = interval(np.array([0.2, 0.5, -0.5, 0.0, 0.1]))
    assert got.delta == 0.2
    assert got.low == pytest.approx(-0.5 + 0.075 * 0.5)
    assert got.high == pytest.approx(0.1 + 0.925 * 0.4)
    assert got.verdict == "tie"
    assert Interval(0.1, 0.01, 0.2).verdict == "better" and Interval(-0.1, -0.2, -0.01).verdict == "worse"
    assert Interval(0.0123, 0.004, 0.0205).format() == "+1.23 [+0.40, +2.05]"


def test_bootstrap_matches_a_hand_computed_case(monkeypatch):
    """Two tasks, three items each, four hand-chosen resamples (the counts of each item)."""
    chosen = np.array([[3, 0, 0], [0, 3, 0], [1, 1, 1], [2, 1, 0]], dtype=float)
    monkeypatch.setattr(bootstrap, "resample_counts", lambda n, b, seed, name: chosen)
    cand = {
        NEWS: retrieval_items([1.0, 0.5, 0.0], texts(3), ["d"]),
        BBC: classification_items(np.array([[1, 1, 0], [1, 0, 0]], bool), texts(3, "t"), "abc"),
    }
    ref = {
        NEWS: retrieval_items([0.5, 0.5, 0.5], texts(3), ["d"]),
        BBC: classification_items(np.array([[0, 1, 1], [0, 1, 1]], bool), texts(3, "t"), "abc"),
    }
    got = paired_intervals(row_replicates([cand], resamples=4), row_replicates([ref], resamples=4))
    # retrieval: candidate means 1, 0.5, 0.5, (2 + 0.5) / 3 -> minus 0.5
    retrieval = np.array([0.5, 0.0, 0.0, 2.5 / 3 - 0.5])
    # classification, per-item accuracy over the two seeds: candidate [1, 0.5, 0], reference [0, 1, 1]
    classification = np.array([1.0, 0.5, 0.5, 2.5 / 3]) - np.array([0.0, 1.0, 2 / 3, 1 / 3])
    overall = (retrieval + classification) / 2

    def by_hand(diffs: np.ndarray) -> tuple[float, float]:
        d = np.sort(diffs)  # linear percentiles of 4 values: positions 0.075 and 2.925
        return d[0] + 0.075 * (d[1] - d[0]), d[2] + 0.925 * (d[3] - d[2])

    for level, diffs, full in (
        ("retrieval", retrieval, 0.0),
        ("classification", classification, 0.5 - 2 / 3),
        ("overall", overall, (0.0 + 0.5 - 2 / 3) / 2),
    ):
        low, high = by_hand(diffs)
        assert got[level].delta == pytest.approx(full), level
        assert (got[level].low, got[level].high) == (pytest.approx(low), pytest.approx(high)), level


def test_two_items_known_answer():
    """Per-item differences 1 and 0: a resample's mean difference is 1, 1/2 or 0 with probabilities
    1/4, 1/2, 1/4, so the 95% interval of 1000 resamples is exactly [0, 1] around 1/2."""
    cand = {NEWS: retrieval_items([1.0, 0.0], texts(2), ["d"])}
    ref = {NEWS: retrieval_items([0.0, 0.0], texts(2), ["d"])}
    got = paired_intervals(row_replicates([cand]), row_replicates([ref]))["retrieval"]
    assert (got.delta, got.low, got.high, got.verdict) == (0.5, 0.0, 1.0, "tie")


def test_identical_items_give_exactly_zero_and_a_tie():
    a = suite(0.5, "model-a")
    got = paired_intervals(row_replicates([a]), row_replicates([dict(a)]))
    assert set(got) == {"retrieval", "sts", "classification", "clustering", "overall"}
    for level, iv in got.items():
        assert (iv.delta, iv.low, iv.high, iv.verdict) == (0.0, 0.0, 0.0, "tie"), level


def test_better_on_every_item_excludes_zero_with_the_right_sign():
    n = 60
    rng = np.random.default_rng(0)
    base = rng.uniform(0.0, 0.8, n)
    better = base + rng.uniform(0.01, 0.2, n)  # every query gains
    a = {NEWS: retrieval_items(better, texts(n), ["d"])}
    b = {NEWS: retrieval_items(base, texts(n), ["d"])}
    up = paired_intervals(row_replicates([a]), row_replicates([b]))["overall"]
    down = paired_intervals(row_replicates([b]), row_replicates([a]))["overall"]
    assert up.low > 0 and up.verdict == "better"
    assert down.high < 0 and down.verdict == "worse"
    assert (down.delta, down.low, down.high) == pytest.approx((-up.delta, -up.high, -up.low))


def test_same_resamples_for_both_models_a_constant_offset_is_exact():
    """Paired: adding c to every query's score moves every resample's difference by exactly c (up to
    float rounding); unpaired draws would scatter it. An order-preserving change of the STS cosines
    changes no resample's Spearman."""
    a = suite(0.5, "model-a")
    news = ("retrieval", "news", "", "test")
    shifted = dict(a)
    shifted[news] = ItemScores("retrieval", a[news].identity, {"ndcg": a[news].arrays["ndcg"] + 0.03})
    sts = ("sts", "lee_sts", "", "test")
    shifted[sts] = ItemScores(
        "sts", a[sts].identity, {**a[sts].arrays, "predicted": a[sts].arrays["predicted"] * 2 + 1}
    )
    diff = bootstrap.difference(row_replicates([shifted]), row_replicates([a]))
    np.testing.assert_allclose(diff["retrieval"], 0.03 / 2, atol=1e-12)  # news is one of two retrieval sets
    np.testing.assert_allclose(diff["overall"], 0.03 / 2 / 4, atol=1e-12)
    np.testing.assert_allclose(diff["sts"], 0.0, atol=1e-12)


def test_several_seeds_are_drawn_with_replacement_then_averaged_per_resample():
    """Column 0 is the mean over the seeds; resample b weights seed s by how often it was drawn."""
    a0, a1, b = suite(0.5, "a0"), suite(0.6, "a1"), suite(0.55, "b")
    both = row_replicates([a0, a1])
    drawn = bootstrap.seed_counts(2, bootstrap.DEFAULT_RESAMPLES, bootstrap.DEFAULT_SEED)
    assert both.seeds == 2 and (drawn[0] == 1).all() and (drawn.sum(axis=1) == 2).all()
    assert {(0.0, 2.0), (1.0, 1.0), (2.0, 0.0)} == {tuple(r) for r in drawn[1:]}  # every draw occurs
    for task in a0:
        one, two = row_replicates([a0]).values[task], row_replicates([a1]).values[task]
        np.testing.assert_allclose(both.values[task], (drawn[:, 0] * one + drawn[:, 1] * two) / 2, atol=1e-12)
        assert both.values[task][0] == pytest.approx((one[0] + two[0]) / 2)
    with pytest.raises(MissingItems, match="different items"):
        news = ("retrieval", "news", "", "test")
        bad = {**a1, news: retrieval_items([0.5], ["other"], ["d"])}
        row_replicates([a0, bad])
    assert paired_intervals(both, row_replicates([b]))["overall"].delta == pytest.approx(
        both.levels["overall"][0] - row_replicates([b]).levels["overall"][0]
    )


def test_seed_draws_are_shared_by_rows_with_as_many_seeds_and_reproducible():
    drawn = bootstrap.seed_counts(3, 200, 0)
    assert drawn.shape == (201, 3) and not drawn.flags.writeable
    np.testing.assert_array_equal(bootstrap.seed_counts(3, 200, 0), drawn)
    assert not np.array_equal(bootstrap.seed_counts(3, 200, 1), drawn)
    assert drawn[1:].mean() == pytest.approx(1.0, abs=0.1)  # each seed drawn once on average
    np.testing.assert_array_equal(bootstrap.seed_counts(1, 5, 0), np.ones((6, 1)))  # a baseline: no level


def seeded_row(base: np.ndarray, offsets: list[float], queries: list[str]) -> list[dict]:
    """One retrieval task's per-query nDCG ``base + offset`` for each seed's offset."""
    task = ("retrieval", "news", "", "test")
    return [{task: retrieval_items(base + off, queries, ["d"])} for off in offsets]


def test_a_constant_difference_on_every_seed_and_item_has_a_zero_width_interval():
    """Known answer: the candidate is the reference + 0.02 on every item of every seed, whatever the
    seeds' own spread; every seed and item draw sees exactly +0.02, so the interval is [0.02, 0.02]."""
    rng = np.random.default_rng(0)
    base, queries = rng.uniform(0.2, 0.8, 40), texts(40)
    spread = [-0.1, 0.0, 0.15]
    ref = row_replicates(seeded_row(base, spread, queries))
    cand = row_replicates(seeded_row(base + 0.02, spread, queries))
    got = paired_intervals(cand, ref)["overall"]
    assert (got.delta, got.low, got.high) == pytest.approx((0.02, 0.02, 0.02), abs=1e-12)
    assert got.verdict == "better"


def test_seed_noise_that_swamps_a_small_item_level_gain_is_a_tie():
    """Known answer: the candidate is better by 0.002 on every item, but its seeds move the whole row by
    -0.05 / +0.05 / +0.01 against the reference's (training noise); the seed mean favours it by 0.0053.
    Over test items alone every resample sees that +0.0053, a confident "better"; with seeds resampled
    the draws span about -0.048 .. +0.052, so the interval holds 0 and the verdict is a tie."""
    rng = np.random.default_rng(1)
    base, queries = rng.uniform(0.2, 0.8, 40), texts(40)
    ref = seeded_row(base, [0.0, 0.0, 0.0], queries)
    cand = seeded_row(base + 0.002, [0.05, -0.05, 0.01], queries)
    hierarchical = paired_intervals(row_replicates(cand), row_replicates(ref))["overall"]
    assert hierarchical.delta == pytest.approx(0.002 + 0.01 / 3, abs=1e-12)
    assert hierarchical.low < 0 < hierarchical.high and hierarchical.verdict == "tie"
    assert hierarchical.low == pytest.approx(0.002 - 0.05, abs=1e-9)  # 3 draws of the -0.05 seed occur
    items_only = [
        bootstrap.interval(
            np.mean(
                [
                    row_replicates([c]).levels["overall"] - row_replicates([r]).levels["overall"]
                    for c, r in zip(cand, ref, strict=True)
                ],
                axis=0,
            )
        )
    ][0]
    assert items_only.low > 0 and items_only.verdict == "better"  # what one level of resampling says


def test_rows_scored_on_other_items_or_tasks_get_no_interval():
    a = suite(0.5, "a")
    other_items = {**a, ("sts", "lee_sts", "", "test"): sts_items(np.arange(3.0), [1, 2, 3], "abc", "def")}
    with pytest.raises(MissingItems, match="different items") as e:
        paired_intervals(row_replicates([other_items]), row_replicates([a]))
    assert e.value.hint == "items differ"
    fewer = {k: v for k, v in a.items() if k[0] != "clustering"}
    with pytest.raises(MissingItems, match="different tasks: clustering/bbc//test"):
        paired_intervals(row_replicates([fewer]), row_replicates([a]))


def test_full_sample_aggregates_as_the_summary():
    """Column 0 of the levels equals summary.type_averages of records holding each task's metric
    (chatterbot's two languages count once, as one data set)."""
    a = suite(0.5, "a")
    records = pd.DataFrame(
        [
            {
                "task": t,
                "dataset": d,
                "language": lang,
                "metric": MAIN_METRICS[t],
                "dim": 384,
                "precision": "float32",
                "value": items.metric(),
            }
            for (t, d, lang, _), items in a.items()
        ]
    )
    levels = aggregate({task: items.resampled(np.ones((1, items.n_items))) for task, items in a.items()})
    expected = type_averages(records)
    assert {k: float(v[0]) for k, v in levels.items()} == pytest.approx(expected, abs=1e-12)
    chatter = [a[k].metric() for k in a if k[1] == "chatterbot"]
    assert expected["retrieval"] == pytest.approx(
        (a[("retrieval", "news", "", "test")].metric() + np.mean(chatter)) / 2
    )


def test_a_thousand_resamples_of_a_suite_sized_row_take_seconds():
    import time

    sizes = [369, 212, 89, 36, 101, 60, 40, 1225, 500, 500, 500, 222, 1000, 372]
    kinds = ["retrieval"] * 7 + ["sts"] + ["classification"] * 3 + ["clustering"] * 3
    rows = {}
    for n, (k, kind) in zip(sizes, enumerate(kinds), strict=True):
        rows[(kind, f"d{k}", None, "test")] = synthetic_items(kind, f"d{k}", "", n, 0.5, "m")
    start = time.perf_counter()
    paired_intervals(row_replicates([rows]), row_replicates([rows]))
    assert time.perf_counter() - start < 30  # about 1 s on a quiet 2-core machine
