"""Run one of the paper's comparisons end to end: train (one Hydra multirun), evaluate, tabulate.

    python experiments/sweep.py default              # what `make ablate` runs
    python experiments/sweep.py table5 --seeds 3     # mean ± std over 3 seeds; ties printed as such
    python experiments/sweep.py figure3 trainer.max_steps=200   # extra Hydra overrides for every run

Phases (each announced as ``[k/4] ...`` and timed):
1. assets: bundled models extracted and verified, corpora parsed and split (cached);
2. training: ``python -m jina5.train -m experiment=<the sweep's configs> seed=0,...`` (one multirun;
   the first run fills the teacher cache, the others reuse it; finished runs are skipped, an
   interrupted run resumes from its last.ckpt);
3. evaluation: the baselines and every run on the held-out suite (``jina5.evaluate``; results of an
   unchanged model are reused from the store), plus each run's training curve and wall time;
4. tables and figures: ``experiments/tables.py`` from the results store alone.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import build, default_out, load_sweeps  # noqa: E402

from jina5.assets import BUNDLED_MODELS, prepare_bundled  # noqa: E402
from jina5.eval.store import ResultsStore  # noqa: E402
from jina5.run_config import compose  # noqa: E402


class Phases:
    """Prints ``[k/n] title`` as each phase starts and a timing table at the end."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.times = total, 0, []

    @contextlib.contextmanager
    def __call__(self, title: str) -> Iterator[None]:
        self.done += 1
        print(f"\n[{self.done}/{self.total}] {title} ...", flush=True)
        start = time.perf_counter()
        yield
        self.times.append((title, time.perf_counter() - start))

    def report(self) -> str:
        width = max(len(t) for t, _ in self.times)
        rows = [f"  {t:<{width}}  {s:7.1f} s" for t, s in self.times]
        return "\n".join(
            ["per-phase time:", *rows, f"  {'total':<{width}}  {sum(s for _, s in self.times):7.1f} s"]
        )


def compose_config(config_name: str, overrides: Sequence[str]) -> DictConfig:
    return compose(overrides, config_name)


def run_dir(cfg: DictConfig) -> Path:
    """Where ``jina5.train`` writes a composed training config: outputs/runs/<run_name>."""
    return Path(cfg.paths.output_root) / "runs" / cfg.run_name


def training_records(run: Path) -> list[dict]:
    """The run's dev curve and training curves (logs/metrics.csv) and wall time (done.json) as records."""
    import json

    base = {"dataset": "dev", "language": "", "split": "dev", "dim": None, "precision": "float32"}
    done = json.loads((run / "done.json").read_text())
    records = [
        {
            **base,
            "task": "training",
            "metric": "train_seconds",
            "value": done["train_seconds"],
            "step": done["steps"],
        }
    ]
    metrics = run / "logs" / "metrics.csv"
    if metrics.exists():
        log = pd.read_csv(metrics)
        for col in [c for c in log.columns if c.startswith(("val/", "train/"))]:
            task = "dev_curve" if col.startswith("val/") else "training_curve"
            for step, value in log[["step", col]].dropna().itertuples(index=False):
                records.append(
                    {
                        **base,
                        "task": task,
                        "metric": col.split("/", 1)[1],
                        "value": float(value),
                        "step": int(step),
                    }
                )
    return records


def evaluate_model(model: str, eval_overrides: Sequence[str], results: str) -> dict:
    from jina5.evaluate import evaluate

    cfg = compose_config("eval", [f"model={model}", f"results={results}", "progress=false", *eval_overrides])
    return evaluate(cfg)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", help=f"one of: {', '.join(load_sweeps())}")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--results", default="results/results.jsonl", help="the results store")
    ap.add_argument(
        "--out", default=None, help="tables/figures dir (default results/ablation or results/<sweep>)"
    )
    ap.add_argument(
        "--eval",
        dest="eval_overrides",
        action="append",
        default=[],
        help="an override for the evaluation config, e.g. --eval eval=smoke",
    )
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every training run")
    args = ap.parse_intermixed_args(argv)
    spec = load_sweeps()[args.sweep]
    overrides = [*spec.get("overrides", []), *args.overrides]
    seeds = list(range(args.seeds))
    phases = Phases(4)

    with phases("assets: extracting and verifying bundled models"):
        for name in BUNDLED_MODELS:
            print(f"  {name}: {prepare_bundled(name)}")

    with phases(
        f"training {len(spec['experiments'])} experiment(s) x {len(seeds)} seed(s) as one Hydra multirun"
    ):
        cmd = [
            sys.executable,
            "-m",
            "jina5.train",
            "-m",
            "experiment=" + ",".join(spec["experiments"]),
            "seed=" + ",".join(map(str, seeds)),
            *overrides,
        ]
        print("  " + " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)

    store = ResultsStore(args.results)
    with phases("evaluating baselines and runs on the held-out suite"):
        if spec.get("evaluate", True):
            for baseline in spec.get("baselines", []):
                print(f"  baseline {baseline}", flush=True)
                evaluate_model(baseline, args.eval_overrides, args.results)
        for experiment in spec["experiments"]:
            for seed in seeds:
                cfg = compose_config("train", [f"experiment={experiment}", f"seed={seed}", *overrides])
                run = run_dir(cfg)
                stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
                run_id = f"{run.name}-{stamp}"
                if spec.get("evaluate", True):
                    print(f"  {run}", flush=True)
                    out = evaluate_model(str(run), [*args.eval_overrides, f"run_id={run_id}"], args.results)
                    fields = out["run"]
                else:
                    fields = {
                        "run_id": run_id,
                        "experiment": cfg.experiment_name,
                        "seed": seed,
                        "model": str(run),
                    }
                store.append(training_records(run), fields)

    with phases("tables and figures from the results store"):
        out = args.out or default_out(args.sweep)
        build(args.results, args.sweep, out)
        print(Path(out, "summary.md").read_text())
        print(f"  written: {out}/summary.md, {out}/summary.json, figures")
    print(phases.report())


if __name__ == "__main__":
    main()
