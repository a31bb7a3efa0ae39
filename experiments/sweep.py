"""Run one of the paper's comparisons end to end: train (one Hydra multirun), evaluate, tabulate.

    python experiments/sweep.py default              # what `make ablate` runs (the sweep's 3 seeds)
    python experiments/sweep.py table5 --seeds 3     # mean ± std over 3 seeds; ties printed as such
    python experiments/sweep.py figure3 trainer.max_steps=200   # extra Hydra overrides for every run
    python experiments/sweep.py stage2 --stage1 outputs/runs/pure_distill-seed0 --steps 100 --lr-scale 10

The sweeps are declared in experiments/sweeps.yaml. Stage 2 trains the task adapters with
``init_from=<--stage1 run>`` into ``<output_root>/stage2/<stage-1 run name>/runs``, combines each seed's
adapters into one encoder (``jina5.export.combine_adapters``) and evaluates it and the stage-1 run;
``--steps`` / ``--lr-scale`` replace the sweep's training budget (steps, and x each experiment's lr).

Phases (each announced as ``[k/4] ...`` and timed):
1. assets: bundled models extracted and verified, corpora parsed and split (cached);
2. training: ``python -m jina5.train -m experiment=<the sweep's configs> seed=0,...`` (one multirun;
   the first run fills the teacher cache, the others reuse it; finished runs are skipped, an
   interrupted run resumes from its last.ckpt);
3. evaluation: the baselines (and a stage-1 run) and every run (or each seed's combined adapters) on the
   held-out suite (``jina5.evaluate``; results of an unchanged model are reused from the store), plus
   each run's training curve and wall time;
4. tables and figures: ``python -m jina5.report.tables`` from the results store alone.

``--launcher <name>`` runs both the trainings and the evaluations as Hydra multiruns under
``hydra/launcher=<name>`` (``slurm``: SLURM through submitit, ``submitit_local``, ``joblib``: jobs in
parallel on this machine; the ``hydra.launcher.*`` overrides among the training overrides go to both).
Without it, the trainings are one multirun under Hydra's basic launcher and the evaluations run one by
one in this process, in the same order; both write the same records to the results store.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pandas as pd
from jina5.conf import compose

from jina5.assets import BUNDLED_MODELS, prepare_bundled
from jina5.eval.machine import describe, machine
from jina5.eval.store import ResultsStore, isna, new_run_id
from jina5.report.sweep_plan import (
    budget_overrides,
    launcher_overrides,
    run_dir,
    shared_stage1,
    stage1_overrides,
    sweep_values,
    training_commands,
)
from jina5.report.sweep_spec import default_out, load_sweeps, sweep_rows, sweep_suite
from jina5.report.tables import build
from jina5.runs.curves import training_records


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


def evaluate_model(model: str, eval_overrides: Sequence[str], results: str) -> dict:
    from jina5.evaluate import evaluate

    cfg = compose([f"model={model}", f"results={results}", "progress=false", *eval_overrides], "eval")
    return evaluate(cfg)


class Evaluations:
    """The sweep's ``jina5.evaluate`` jobs. Without a launcher each runs at once in this process (as
    ``evaluate_model``); with one (``launcher`` = the overrides that select it), :meth:`add` queues the
    job and :meth:`run` evaluates the queue as Hydra multiruns of ``python -m jina5.evaluate``, one per
    distinct set of overrides (``model`` swept), under that launcher. Each job's ``then`` gets its run
    fields (run_id, experiment, seed, model, config): ``evaluate``'s, or read back from the store."""

    def __init__(self, results: str, launcher: Sequence[str] = ()) -> None:
        self.results, self.launcher = results, list(launcher)
        self.queue: list[tuple[str, list[str], Callable[[dict], None] | None]] = []

    def add(self, model: str, overrides: Sequence[str], then: Callable[[dict], None] | None = None) -> None:
        if not self.launcher:
            fields = evaluate_model(model, overrides, self.results)["run"]
            if then is not None:
                then(fields)
            return
        # a multirun sweeps one value per job: the run id is evaluate's own (same format)
        self.queue.append((model, [o for o in overrides if not o.startswith("run_id=")], then))

    def run(self) -> None:
        if not self.queue:
            return
        store = ResultsStore(self.results)
        before = set(store.read()["run_id"])
        groups: dict[tuple[str, ...], list[str]] = {}
        for model, overrides, _ in self.queue:
            groups.setdefault(tuple(overrides), []).append(model)
        for overrides, models in groups.items():
            cmd = [
                sys.executable,
                "-m",
                "jina5.evaluate",
                "-m",
                f"model={sweep_values(models)}",
                f"results={sweep_values([str(Path(self.results).resolve())])}",
                "progress=false",
                *overrides,
                *self.launcher,
            ]
            print("  " + " ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True)
        fresh = store.read()
        fresh = fresh[~fresh["run_id"].isin(before)]
        for model, overrides, then in self.queue:
            if then is not None:
                then(stored_run(fresh, model, overrides))
        self.queue = []


def stored_run(records: pd.DataFrame, model: str, overrides: Sequence[str]) -> dict:
    """The run fields of the one evaluation of ``model`` (filed under the ``label=`` of ``overrides``, if
    any) among ``records``, as ``jina5.evaluate`` returned them."""
    rows = records[records["model"] == model]
    label = next((o.split("=", 1)[1] for o in overrides if o.startswith("label=")), None)
    if label is not None:
        rows = rows[rows["experiment"] == label]
    run_ids = list(dict.fromkeys(rows["run_id"]))
    if len(run_ids) != 1:
        raise RuntimeError(
            f"expected one new evaluation of {model} {overrides} in the store, found {run_ids}"
        )
    row = rows.iloc[0]
    seed = None if isna(row["seed"]) else int(row["seed"])
    return {
        "run_id": row["run_id"],
        "experiment": row["experiment"],
        "seed": seed,
        "model": model,
        "config": row["config"],
    }


def evaluate_combined(
    runs: Sequence[Path], label: str, seed: int, eval_overrides: Sequence[str], evaluations: Evaluations
) -> None:
    """Combine the adapters of ``runs`` (one backbone) into ``<output_root>/<label>-seed<seed>`` and
    evaluate that encoder as experiment ``label``: each task type is scored by the adapter serving it."""
    from jina5.export import combine_adapters

    combined = runs[0].parent.parent / f"{label}-seed{seed}"
    print(f"  {combined}: the adapters of {', '.join(r.name for r in runs)}", flush=True)
    combine_adapters(runs, combined)
    evaluations.add(str(combined), [*eval_overrides, f"label={label}", f"seed={seed}"])


def evaluate_sweep(
    spec: dict,
    seeds: Sequence[int],
    run_overrides: dict[str, list[str]],
    eval_overrides: Sequence[str],
    results: str,
    stage1: Path | None,
    launcher: Sequence[str] = (),
) -> None:
    """Phase 3 of a sweep (``spec``): its baselines and stage-1 run, then every trained run (or each
    seed's combined adapters) through ``jina5.evaluate``, and every run's training records into the
    store ``results``. ``run_overrides``: {row label: the experiment and overrides it was trained with};
    ``launcher``: the overrides that put the evaluations under a Hydra launcher (:class:`Evaluations`)."""
    evaluate = spec.get("evaluate", True)
    store = ResultsStore(results)
    evaluations = Evaluations(results, launcher)

    def store_training(run: Path) -> Callable[[dict], None]:
        return lambda fields: store.append(training_records(run), fields)

    if evaluate:
        for baseline in spec.get("baselines", []):
            print(f"  baseline {baseline}", flush=True)
            evaluations.add(baseline, eval_overrides)
    if stage1 is not None:
        label = spec["stage1"]["label"]
        # its dev curves (the teacher cosine) under the same run
        then = store_training(stage1) if (stage1 / "done.json").exists() else None
        if evaluate:
            print(f"  stage 1 {stage1}", flush=True)
            evaluations.add(str(stage1), [*eval_overrides, f"label={label}"], then)
        elif then is not None:
            then({"run_id": new_run_id(label), "experiment": label, "seed": 0, "model": str(stage1)})
    runs: dict[int, list[Path]] = {seed: [] for seed in seeds}
    for label, overrides in run_overrides.items():
        for seed in seeds:
            cfg = compose([*overrides, f"seed={seed}"])
            run = run_dir(cfg)
            runs[seed].append(run)
            run_id = new_run_id(run.name)
            if evaluate and not spec.get("combine"):
                print(f"  {run}", flush=True)
                evaluations.add(str(run), [*eval_overrides, f"run_id={run_id}"], store_training(run))
            else:
                fields = {"run_id": run_id, "experiment": label, "seed": seed, "model": str(run)}
                store.append(training_records(run), fields)
    if evaluate and spec.get("combine"):
        for seed, seed_runs in runs.items():
            evaluate_combined(seed_runs, spec["combine"], seed, eval_overrides, evaluations)
    evaluations.run()


def run_sweep(name: str, spec: dict, args: argparse.Namespace) -> Phases:
    """Train, evaluate and tabulate one sweep of sweeps.yaml; returns its timed phases."""
    launcher = launcher_overrides(args.launcher, args.overrides)
    if launcher:  # every training command and composed run config selects the launcher
        args = argparse.Namespace(**{**vars(args), "overrides": [launcher[0], *args.overrides]})
    before = list(spec.get("overrides", []))
    stage1 = args.stage1.resolve() if args.stage1 is not None else None
    base_cmd = None
    if spec.get("stage1") and stage1 is None:
        base_cmd, stage1 = shared_stage1(spec, [*before, *args.overrides])
    if stage1 is not None:
        before += stage1_overrides(stage1, [*before, *args.overrides])
    overrides = [*before, *args.overrides]
    eval_overrides = [*spec.get("eval_overrides", []), *args.eval_overrides]
    steps = args.steps if args.steps is not None else spec.get("steps")
    lr_scale = args.lr_scale if args.lr_scale is not None else spec.get("lr_scale")
    seeds = list(range(args.seeds if args.seeds is not None else spec.get("seeds", 1)))
    rows = sweep_rows(spec)
    phases = Phases(4)

    with phases("assets: extracting and verifying bundled models"):
        for model in BUNDLED_MODELS:
            print(f"  {model}: {prepare_bundled(model)}")

    own = {
        row.label: budget_overrides(
            compose([f"experiment={row.experiment}", *row.overrides, *overrides]), steps, lr_scale
        )
        if steps is not None or lr_scale is not None
        else []
        for row in rows
    }
    commands = training_commands(rows, own, seeds, before, args.overrides)
    if base_cmd is not None and args.launcher:  # the shared stage-1 base trains under the launcher too
        base_cmd = [*base_cmd[:3], "-m", *base_cmd[3:]]
    how = "one Hydra multirun" if len(commands) == 1 else f"{len(commands)} Hydra multiruns"
    title = f"training {len(rows)} experiment(s) x {len(seeds)} seed(s) as {how}"
    with phases(title + (" on the shared stage-1 base" if base_cmd else "")):
        for cmd in [*([base_cmd] if base_cmd else []), *commands]:
            print("  " + " ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True)

    with phases("evaluating baselines and runs on the held-out suite"):
        run_overrides = {
            row.label: [
                f"experiment={row.experiment}",
                *before,
                *row.overrides,
                *own[row.label],
                *args.overrides,
            ]
            for row in rows
        }
        evaluate_sweep(spec, seeds, run_overrides, eval_overrides, args.results, stage1, launcher)

    with phases("tables and figures from the results store"):
        out = args.out or default_out(name)
        build(args.results, name, out, suite=sweep_suite(spec, tuple(args.eval_overrides)))
        print(Path(out, "summary.md").read_text())
        print(f"  written: {out}/summary.md, {out}/summary.json, figures")
    print(phases.report())
    print(f"machine: {describe(machine())}")
    return phases


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", help=f"one of: {', '.join(load_sweeps())}")
    ap.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds 0..N-1 per experiment (default: the sweep's seeds, else 1)",
    )
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
    ap.add_argument(
        "--stage1",
        type=Path,
        default=None,
        help="stage 2: the stage-1 run dir the adapters start from (default: the sweep's shared base)",
    )
    ap.add_argument(
        "--steps", type=int, default=None, help="training steps per run (default: the sweep's steps)"
    )
    ap.add_argument(
        "--lr-scale", type=float, default=None, help="x each experiment's lr (default: the sweep's)"
    )
    ap.add_argument(
        "--launcher",
        default=None,
        help="a Hydra launcher (hydra/launcher=<name>) for the trainings and the evaluations: slurm, "
        "submitit_slurm, submitit_local, joblib (default: Hydra's basic one; evaluations in this process)",
    )
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every training run")
    args = ap.parse_intermixed_args(argv)
    sweeps = load_sweeps()
    if args.sweep not in sweeps:
        ap.error(f"unknown sweep {args.sweep!r}; one of: {', '.join(sweeps)}")
    spec = sweeps[args.sweep]
    names = spec.get("sweeps", [args.sweep])  # a preset (e.g. `paper`) runs its sweeps in order
    if args.stage1 is not None and not any(sweeps[n].get("stage1") for n in names):
        ap.error("--stage1 <run dir> is only for a stage-2 sweep")
    if len(names) > 1 and args.out is not None:
        ap.error("--out names one sweep's directory; a preset writes each sweep to its own")
    start = time.perf_counter()
    timings = []
    for name in names:
        if len(names) > 1:
            print(f"\n=== {name}: {sweeps[name]['title']}", flush=True)
        sub = argparse.Namespace(**vars(args))
        if sweeps[name].get("stage1") is None:
            sub.stage1 = None
        timings.append((name, sum(t for _, t in run_sweep(name, sweeps[name], sub).times)))
    if len(names) > 1:
        print("per-sweep time:")
        for name, seconds in timings:
            print(f"  {name:<12} {seconds:8.1f} s")
        print(f"  {'total':<12} {time.perf_counter() - start:8.1f} s")


if __name__ == "__main__":
    main()
