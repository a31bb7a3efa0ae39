"""Tables, figures and the notebook are rebuilt from a results store alone; values checked by hand."""

from __future__ import annotations

import ast
import json
import math
import os
import re
from pathlib import Path

import pytest
from helpers import REGIME_KEYS, compose, dev_record, task_records, write_fake_run, write_golden_store

from jina5.eval.store import ResultsStore
from jina5.eval.summary import latest_runs, type_averages
from jina5.report import aggregate, markdown_tables, sweep_spec, tables, verdicts

ROOT = Path(__file__).resolve().parents[3]

GOLDEN = ROOT / "tests" / "golden" / "tables"


@pytest.fixture
def store(tmp_path) -> Path:
    """combined: two seeds (0.50, 0.54) with wall times and dev curves; pure_distill: an old evaluation
    (0.30) replaced by a newer one (0.52); the teacher (0.70, binary drop 0.2)."""
    path = tmp_path / "results.jsonl"
    s = ResultsStore(path)
    for seed, base in ((0, 0.50), (1, 0.54)):
        curve = {10: 0.2 + seed / 10, 20: 0.3 + seed / 10}
        write_fake_run(
            s, "combined", seed, base, run_id=f"combined-{seed}", train_seconds=100.0 + seed, curve=curve
        )
    write_fake_run(s, "pure_distill", 0, 0.30, run_id="pure_distill-0-old")
    write_fake_run(s, "pure_distill", 0, 0.52, run_id="pure_distill-0-new")
    write_fake_run(s, "teacher", None, 0.70, run_id="t", binary_drop=0.2)
    return path


def by_hand_overall(base: float, dim_shift: float = 0.0, drop: float = 0.0) -> float:
    v = lambda k: base + 0.01 * k - dim_shift - drop  # noqa: E731
    retrieval = (v(0) + (v(1) + v(2)) / 2) / 2  # chatterbot's languages first, then the two data sets
    return (retrieval + v(3) + v(4) + v(5)) / 4


def test_type_averages_by_hand(store):
    df = latest_runs(ResultsStore(store).read())
    run = df[(df["experiment"] == "combined") & (df["seed"] == 0)]
    got = type_averages(run)
    assert got["retrieval"] == pytest.approx((0.50 + (0.51 + 0.52) / 2) / 2)
    assert got["sts"] == pytest.approx(0.53)
    assert got["overall"] == pytest.approx(by_hand_overall(0.50))
    assert type_averages(run, dim=128)["overall"] == pytest.approx(by_hand_overall(0.50, 0.05))
    assert type_averages(run, precision="binary")["overall"] == pytest.approx(by_hand_overall(0.50, drop=0.1))


def test_latest_run_wins_and_seeds_give_mean_and_std(store):
    df = latest_runs(ResultsStore(store).read())
    assert set(df[df["experiment"] == "pure_distill"]["run_id"]) == {"pure_distill-0-new"}
    table = aggregate.regime_table(df, ["teacher", "combined", "pure_distill"]).set_index("experiment")
    a, b = by_hand_overall(0.50), by_hand_overall(0.54)
    assert table.loc["combined", "float/overall"] == pytest.approx((a + b) / 2)
    assert table.loc["combined", "float/overall_std"] == pytest.approx(math.sqrt(((a - b) / 2) ** 2 * 2))
    assert table.loc["combined", "train_seconds"] == pytest.approx(100.5)
    assert table.loc["combined", "seeds"] == 2
    # the binary drop is taken per seed, so its std is the spread of the drop (here the same in both seeds)
    assert table.loc["combined", "binary_drop/retrieval"] == pytest.approx(-0.1)
    assert table.loc["combined", "binary_drop/retrieval_std"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc["teacher", "binary_drop/retrieval"] == pytest.approx(-0.2)
    assert math.isnan(table.loc["teacher", "float/overall_std"])
    # pure_distill (0.52 base, one seed) is within combined's spread of the best (teacher, no spread) -> not a tie
    marks = verdicts.ties(table.reset_index())
    assert marks["teacher"] == "best" and marks["pure_distill"] == ""


def test_tie_when_difference_is_within_the_spread(store):
    df = latest_runs(ResultsStore(store).read())
    table = aggregate.regime_table(df, ["combined", "pure_distill"])
    assert verdicts.ties(table) == {"combined": "best", "pure_distill": "tie"}  # 0.52 vs 0.52 +- 0.028


def test_build_writes_summary_and_figures(store, tmp_path, monkeypatch):
    default = {
        **sweep_spec.load_sweeps()["default"],
        "experiments": ["ablation/combined", "ablation/pure_distill"],
        "baselines": ["teacher"],
    }
    monkeypatch.setattr(tables, "load_sweeps", lambda: {"default": default})
    out = tmp_path / "out"
    result = tables.build(store, "default", out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result, default=float))
    combined = summary["regimes"]["combined"]
    assert combined["float/overall"] == pytest.approx((by_hand_overall(0.50) + by_hand_overall(0.54)) / 2)
    assert combined["dim128/overall"] == pytest.approx(
        (by_hand_overall(0.50, 0.05) + by_hand_overall(0.54, 0.05)) / 2
    )
    for key in REGIME_KEYS:
        assert combined[key] is not None, key
    # the truncation and dev-curve tables (seed means), in json and markdown
    assert summary["truncation"]["combined"]["128"] == pytest.approx(combined["dim128/overall"])
    assert summary["truncation"]["teacher"]["384"] == pytest.approx(by_hand_overall(0.70))
    assert summary["dev_curves"] == {"combined": {"10": pytest.approx(0.25), "20": pytest.approx(0.35)}}
    md = (out / "summary.md").read_text()
    assert "| teacher | 1 |" in md and "best" in md
    assert summary["regimes"]["teacher"]["float/overall"] > combined["float/overall"]
    assert "| combined | 2 |" in md and md.split("| combined | 2 |")[1].split("\n")[0].rstrip().endswith(
        "| best |"
    )
    assert "| experiment \\ dim | 128 | 384 |" in md and "| experiment \\ step | 10 | 20 |" in md
    assert "| combined | 25.00 | 35.00 |" in md
    for fig in ("truncation.png", "precision.png", "dev_curves.png"):
        assert (out / fig).stat().st_size > 1000


def test_the_default_table_reads_the_default_suite_even_after_a_newer_smoke_run(tmp_path, monkeypatch):
    """combined, seed 0: evaluated on the default suite (0.50), then on the smoke suite (0.90, newer), then
    on the default suite narrowed to retrieval (a Table 5-style run, newer still). The default table
    shows the default run and says which suite it reads; the other suites' tables their own runs."""
    store = ResultsStore(tmp_path / "results.jsonl")
    for run_id, eval_cfg, base in (
        ("combined-default", {"suite": "default"}, 0.50),
        ("combined-smoke", {"suite": "smoke"}, 0.90),
        ("combined-retrieval", {"suite": "default", "variant": "retrieval"}, 0.70),
    ):
        run = {
            "run_id": run_id,
            "experiment": "combined",
            "seed": 0,
            "model": "m",
            "config": {"eval": eval_cfg},
        }
        store.append(task_records(base), run)
    spec = {**sweep_spec.load_sweeps()["default"], "experiments": ["ablation/combined"], "baselines": []}
    monkeypatch.setattr(tables, "load_sweeps", lambda: {"default": spec})
    result = tables.build(store.path, "default", tmp_path / "default")
    assert result["regimes"]["combined"]["float/overall"] == pytest.approx(by_hand_overall(0.50))
    assert result["suite"] == "default"
    md = (tmp_path / "default" / "summary.md").read_text().splitlines()
    assert md[2].startswith("Evaluation suite: `default` (")  # the line under the title
    assert "Left out: 1 run(s) of `default/retrieval`, 1 run(s) of `smoke`" in md[2]
    for suite, base in (("smoke", 0.90), ("default/retrieval", 0.70)):
        other = tables.build(store.path, "default", tmp_path / "other", suite=suite)
        assert other["regimes"]["combined"]["float/overall"] == pytest.approx(by_hand_overall(base))
        assert f"Evaluation suite: `{suite}`" in (tmp_path / "other" / "summary.md").read_text()


def test_each_sweep_reads_the_suite_its_evaluation_is_filed_under():
    sweeps = sweep_spec.load_sweeps()
    assert sweep_spec.sweep_suite(sweeps["default"]) == "default"
    assert sweep_spec.sweep_suite(sweeps["default"], ("eval=smoke",)) == "smoke"  # sweep.py --eval eval=smoke
    assert sweep_spec.sweep_suite(sweeps["table5"]) == sweep_spec.sweep_suite(sweeps["table6"])
    assert sweep_spec.sweep_suite(sweeps["table5"]) == "default/retrieval"
    assert sweep_spec.sweep_suite(sweeps["stage2"]) == "default/float32_full_dim"
    # runs stored before eval.suite existed: Table 5's retrieval-only settings are told from the default's
    from jina5.eval.suite_names import composed_eval, run_suite_id

    old = composed_eval(sweeps["table5"]["eval_overrides"])
    old = {"eval": {k: v for k, v in old.items() if k not in ("suite", "variant")}}
    assert run_suite_id(old).startswith("unnamed-")
    assert run_suite_id(old, sweep_spec.known_suites()) == "default/retrieval"


def test_curves_only_sweep_gets_the_curve_table(store, tmp_path, monkeypatch):
    # figure3's runs are not evaluated on the suite: the store holds their curves and train time only
    path = tmp_path / "curves.jsonl"
    ResultsStore(path).append(
        [
            r
            for r in ResultsStore(store).read(experiment="combined").to_dict("records")
            if r["task"] != "retrieval" and r["task"] in ("training", "dev_curve")
        ],
        {"run_id": "c", "experiment": "combined", "seed": 0, "model": "m"},
    )
    ResultsStore(path).append(
        [dev_record("dev_curve", "teacher_ndcg@10", 0.9, step=10)],
        {"run_id": "combined-0", "experiment": "combined", "seed": 0, "model": "m"},
    )
    monkeypatch.setattr(
        tables,
        "load_sweeps",
        lambda: {
            "figure3": {
                "title": "t",
                "experiments": ["ablation/combined"],
                "baselines": [],
                "evaluate": False,
            }
        },
    )
    result = tables.build(path, "figure3", tmp_path / "out")
    assert result["regimes"] == {} and result["dev_curves"]["combined"] == {
        10: pytest.approx(0.25),
        20: pytest.approx(0.35),
    }
    assert (tmp_path / "out" / "dev_curves.png").stat().st_size > 1000
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "The teacher on the same dev pairs: 90.00." in summary
    # curves and wall times come from training, not from an evaluation: no machine line for them
    assert "Evaluated on" not in summary and result["machines"] == []


def test_every_sweep_names_existing_experiment_configs():
    sweeps = sweep_spec.load_sweeps()
    for name, spec in sweeps.items():
        if "sweeps" in spec:  # a preset: its sweeps exist and are not presets
            assert all("experiments" in sweeps[s] for s in spec["sweeps"]), name
            continue
        labels = [row.label for row in sweep_spec.sweep_rows(spec)]
        assert len(set(labels)) == len(labels), name
        if spec.get("stage1"):
            assert compose([f"experiment={spec['stage1']['experiment']}"]).get("adapter") is None, name


# a cell that draws: pyplot, or one of jina5.report.figures' drawing functions
PLOTS = re.compile(r"\bplt\.|\.plot\(|\b(truncation_curve|precision_points|dev_curves)\(")


def imported_modules(source: str) -> list[str]:
    """The modules a notebook cell imports (its IPython magics left out)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return [
        name
        for node in ast.walk(ast.parse("\n".join(lines)))
        for name in (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    ]


def test_notebook_runs_from_any_folder_and_shows_every_figure(store, tmp_path, monkeypatch):
    """The notebook, executed from a folder outside the repository, imports jina5.report (no path
    tricks) and every cell that plots shows its figure (an image/png output)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "notebooks" / "explore_results.ipynb", as_version=4)
    nb.cells[
        1
    ].source = f'STORE = r"{store}"\nEXPERIMENTS = ["teacher", "combined"]\nSEEDS = None\nSUITE = "default"'
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the kernel finds this checkout's jina5 as it would an installed one, and picks its own (inline) backend
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(elsewhere)}}
    )
    client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [c.source for c in code if "sys.path" in c.source]
    imported = {m for c in code for m in imported_modules(c.source)}
    assert {m.split(".")[0] for m in imported}.isdisjoint({"experiments", "tables", "figures", "sweep_spec"})
    plotting = [c for c in code if PLOTS.search(c.source)]
    assert len(plotting) >= 2
    for cell in plotting:
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source
    outputs = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/markdown", "")) for c in code for o in c.outputs
    )
    assert (
        "experiments: ['combined', 'teacher']" in outputs or "experiments: ['teacher', 'combined']" in outputs
    )
    assert "| combined | 2 |" in outputs
    assert "evaluation suite: default" in outputs


@pytest.fixture(scope="module")
def golden_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("golden") / "results.jsonl"
    write_golden_store(path)
    return path


@pytest.mark.parametrize("sweep", ["default", "table5", "table6", "figure3", "truncation", "stage2"])
def test_every_sweep_rebuilds_its_golden_summary(golden_store, tmp_path, sweep):
    # The goldens of the five paper sweeps were written by tables.py before the layouts moved into
    # sweeps.yaml (hard-coded per sweep then); stage2's was checked by hand (next test).
    tables.build(golden_store, sweep, tmp_path)
    assert (tmp_path / "summary.md").read_text() == (GOLDEN / sweep / "summary.md").read_text()
    assert (tmp_path / "summary.json").read_text() == (GOLDEN / sweep / "summary.json").read_text()


def test_layout_ranks_by_its_declared_value(golden_store):
    # Table 5 compares every row with its declared reference (the paper's full objective) on its rank_by
    # value, retrieval. Its runs have no per-item scores (an older store): no interval, and the verdict
    # falls back to the seed-std rule (nce_distill is within the larger std, nce_gor is not).
    md = (GOLDEN / "table5" / "summary.md").read_text()
    head = (
        "| experiment | seeds | retrieval | binary | binary - float | Δ retrieval [95% CI]"
        " | vs loss_ablation/nce_distill_gor |"
    )
    assert head in md
    row = "| loss_ablation/nce_distill | 2 | 53.90 ± 1.34 | 42.90 ± 1.34 | -11.00 ± 0.00 | no CI (re-evaluate) | tie |"
    assert row in md
    assert (
        "| loss_ablation/nce_gor | 1 | 55.25 | 48.25 | -7.00 | no CI (re-evaluate) |  | 64.11 / 66.11 |" in md
    )
    # without a declared reference the best row by rank_by is the reference: nce_gor is best in
    # retrieval (its retrieval is shifted up) but not overall, where nce_distill would be
    df = latest_runs(ResultsStore(golden_store).read())
    spec = sweep_spec.load_sweeps()["table5"]
    trained = aggregate.regime_table(df, [row.label for row in sweep_spec.sweep_rows(spec)])
    assert verdicts.ties(trained, "float/overall")["loss_ablation/nce_distill"] == "best"
    assert verdicts.ties(trained, spec["table"]["rank_by"])["loss_ablation/nce_gor"] == "best"
    undeclared = {k: v for k, v in spec["table"].items() if k != "reference"}
    assert verdicts.reference_row(spec, undeclared, trained) == ("loss_ablation/nce_gor", True)
    assert verdicts.reference_row(spec, spec["table"], trained) == ("loss_ablation/nce_distill_gor", False)
    no_rank = {k: v for k, v in undeclared.items() if k != "rank_by"}
    assert verdicts.reference_row(spec, no_rank, trained) == ("loss_ablation/nce_distill_gor", False)  # first


def test_default_table_has_paired_intervals_and_their_verdicts(golden_store):
    """The default sweep's trained runs are item-backed: each row gets its difference from the best row
    (combined) with the bootstrap interval, and a verdict from the interval alone."""
    summary = json.loads((GOLDEN / "default" / "summary.json").read_text())
    md = (GOLDEN / "default" / "summary.md").read_text()
    intervals, regimes = summary["intervals"], summary["regimes"]
    assert intervals["reference"] == "combined" and "1000 resamples" in intervals["method"]
    assert set(intervals["rows"]) == {"pure_distill", "pure_contrastive"}  # trained rows, not baselines
    for row in ("pure_distill", "pure_contrastive"):
        for key in ("float/overall", "float/sts", "binary/overall", "dim128/overall"):
            got = intervals["rows"][row][key]
            # the point estimate is the difference of the table's seed means (stored values)
            assert got["delta"] == pytest.approx(regimes[row][key] - regimes["combined"][key], abs=2e-6)
            assert got["low"] <= got["delta"] <= got["high"]
            assert got["verdict"] == ("better" if got["low"] > 0 else "worse" if got["high"] < 0 else "tie")
    worse, tie = (
        intervals["rows"]["pure_contrastive"]["float/overall"],
        intervals["rows"]["pure_distill"]["float/overall"],
    )
    assert worse["verdict"] == "worse" and tie["verdict"] == "tie"
    assert "train s | Δ overall [95% CI] | vs best |" in md
    cell = f"{worse['delta'] * 100:+.2f} [{worse['low'] * 100:+.2f}, {worse['high'] * 100:+.2f}]"
    assert md.split("| pure_contrastive | 2 |")[1].split("\n")[0].endswith(f"| {cell} | worse |")
    assert md.split("| combined | 2 |")[1].split("\n")[0].endswith("| (reference) | best |")
    # the truncation sweep's reference (combined_matryoshka) has no per-item scores: no interval
    truncation = json.loads((GOLDEN / "truncation" / "summary.json").read_text())["intervals"]
    assert truncation["rows"]["combined"]["float/overall"] == {"missing": "no CI (re-evaluate)"}


def test_build_takes_the_number_of_resamples(golden_store, tmp_path):
    few = tables.build(golden_store, "default", tmp_path / "few", resamples=50)["intervals"]
    many = json.loads((GOLDEN / "default" / "summary.json").read_text())["intervals"]
    assert "50 resamples" in few["method"]
    a, b = few["rows"]["pure_distill"]["float/overall"], many["rows"]["pure_distill"]["float/overall"]
    assert a["delta"] == b["delta"] and (a["low"], a["high"]) != (b["low"], b["high"])


def test_stage2_compares_stage1_and_adapters_per_task_type(golden_store):
    # stage1 (base 0.52) and stage2_adapters (0.55): one seed each, by hand as by_hand_overall does
    md = (GOLDEN / "stage2" / "summary.md").read_text()
    s1, s2 = (0.52 + (0.53 + 0.54) / 2) / 2, (0.55 + (0.56 + 0.57) / 2) / 2
    assert f"| retrieval | {s1 * 100:.2f} | {s2 * 100:.2f} | +3.00 |" in md
    assert f"| clustering | {(0.52 + 0.05) * 100:.2f} | {(0.55 + 0.05) * 100:.2f} | +3.00 |" in md
    assert (
        f"| overall | {by_hand_overall(0.52) * 100:.2f} | {by_hand_overall(0.55) * 100:.2f} | +3.00 |" in md
    )
    table = aggregate.regime_table(
        latest_runs(ResultsStore(golden_store).read()), ["stage1", "stage2_adapters"]
    )
    lines = markdown_tables.comparison_markdown(
        table, [("sts", "float/sts")], "stage2_adapters", "stage1"
    ).splitlines()
    assert lines[0] == "| task type | stage2_adapters | stage1 | delta |"
    assert lines[2] == "| sts | 58.00 | 55.00 | -3.00 |"
