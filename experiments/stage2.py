"""Stage-2 table: train the four task adapters on a stage-1 run, then compare, per evaluation task
type, the stage-1 student with the student + the adapter that serves that type.

    .venv/bin/python experiments/stage2.py --stage1 outputs/runs/pure_distill-seed0
    .venv/bin/python experiments/stage2.py --stage1 RUN --steps 60 --steps-for retrieval=100 --lr-scale 10 --eval smoke

1. Train ``experiment=adapter/<task>`` for retrieval, text_matching, clustering, classification with
   ``init_from=<stage-1 run>`` (one ``python -m jina5.train`` process each; a finished run is skipped,
   an interrupted one resumes). Step counts are a CPU budget (the paper's are 8k-30k), configurable.
2. Combine the four adapters into one directory (``jina5.export.combine_adapters``): one backbone,
   ``StudentEncoder.from_pretrained(<out>/adapters)`` restores all of them.
3. Evaluate the stage-1 encoder and the combined encoder with the evaluation suite's Python API
   (``jina5.eval.suite.run_suite``); for a model with adapters the suite routes every task type to
   its adapter (``jina5.adapters.EVAL_TASK_TO_ADAPTER``: retrieval -> retrieval, sts -> text-matching,
   clustering -> clustering, classification -> classification).
4. Print and write ``<out>/stage2_table.md`` (+ ``.json``): main metric per task, per task type and
   overall, stage-1 vs + adapter and the difference.

Only float32 at full dim is evaluated by default (``--full-eval`` adds the configured dims and
binary / int8), which is all the table reports.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from jina5.encoder import StudentEncoder
from jina5.eval.suite import run_suite
from jina5.eval.summary import summarise
from jina5.export import combine_adapters

log = logging.getLogger("stage2")

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("retrieval", "text_matching", "clustering", "classification")  # experiment=adapter/<task>


def experiment_lr(task: str) -> float:
    """The learning rate conf/experiment/adapter/<task>.yaml sets (the paper's)."""
    from omegaconf import OmegaConf

    return float(OmegaConf.load(ROOT / "conf" / "experiment" / "adapter" / f"{task}.yaml").optimizer.lr)


def train_adapter(task: str, stage1: Path, out: Path, steps: int, lr_scale: float, extra: list[str]) -> Path:
    """Run ``python -m jina5.train experiment=adapter/<task>`` (skipped when already done); its run dir.

    CPU-budget settings (the paper trains 8k-30k steps): ``steps``; warmup = steps // 10 (the default
    schedule's 20 would be a third of a short run); lr = the experiment's (paper's) lr x ``lr_scale``.
    """
    run_dir = out / "runs" / f"adapter_{task}-seed0"
    overrides = [
        f"experiment=adapter/{task}",
        f"init_from={stage1}",
        f"paths.output_root={out}",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={max(1, min(100, steps))}",
        f"scheduler.warmup_steps={max(1, steps // 10)}",
        f"optimizer.lr={experiment_lr(task) * lr_scale:g}",
        "trainer.enable_progress_bar=false",
    ]
    if task == "retrieval":  # average the last checkpoint with the halfway one (the paper: "an earlier one")
        overrides.append(f"adapter.average_with={steps // 2}" if steps >= 2 else "adapter.average_with=null")
    cmd = [sys.executable, "-m", "jina5.train", *overrides, *extra]
    log.info("train %s: %s", task, " ".join(cmd[1:]))
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    log.info("train %s: %.0f s", task, time.perf_counter() - start)
    return run_dir


def eval_config(name: str, full: bool) -> dict:
    """The ``eval`` group ``conf/eval/<name>.yaml``; float32 at full dim only unless ``full``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=[f"eval={name}", "model=none"])
    eval_cfg = OmegaConf.to_container(cfg.eval, resolve=True)
    if not full:
        eval_cfg.update(dims=[], precisions=["float32"])
    return eval_cfg


def scores(summary: pd.DataFrame) -> pd.DataFrame:
    """(level, task, name, metric, score) of a ``summarise`` table, task rows named by task_name."""
    s = summary[["level", "task", "task_name", "metric", "score"]].copy()
    s["name"] = s["task_name"].str.replace(r" \(.*\)$", "", regex=True)
    return s[["level", "task", "name", "metric", "score"]]


def compare(stage1: pd.DataFrame, adapted: pd.DataFrame) -> pd.DataFrame:
    a, b = scores(stage1), scores(adapted)
    table = a.merge(b, on=["level", "task", "name", "metric"], how="outer", suffixes=("_stage1", "_adapter"))
    table["delta"] = table["score_adapter"] - table["score_stage1"]
    order = {"task": 0, "dataset": 1, "type": 2, "overall": 3}
    table["_o"] = table["level"].map(order)
    return table.sort_values(["_o", "task", "name"]).drop(columns="_o").reset_index(drop=True)


def markdown(table: pd.DataFrame, header: str) -> str:
    lines = [
        header,
        "",
        "| level | task | data set | metric | stage-1 | + adapter | delta |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.level} | {r.task} | {r.name} | {r.metric or ''} | {100 * r.score_stage1:.2f} | "
            f"{100 * r.score_adapter:.2f} | {100 * r.delta:+.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--stage1", type=Path, required=True, help="stage-1 run dir (encoder/ + checkpoints/last.ckpt)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "stage2")
    ap.add_argument("--steps", type=int, default=60, help="training steps per adapter (CPU budget)")
    ap.add_argument("--steps-for", action="append", default=[], metavar="TASK=N", help="per-task step count")
    ap.add_argument(
        "--lr-scale",
        type=float,
        default=1.0,
        help="multiply every adapter's (paper) lr: the paper's lrs assume 8k-30k steps",
    )
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--eval", default="default", help="conf/eval/<name>.yaml (default | smoke)")
    ap.add_argument("--full-eval", action="store_true", help="also the configured dims and binary / int8")
    ap.add_argument(
        "--override", action="append", default=[], help="extra Hydra override for every training run"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    per_task = {k.replace("-", "_"): int(v) for k, v in (s.split("=", 1) for s in args.steps_for)}
    stage1 = args.stage1.resolve()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    run_dirs = [
        train_adapter(t, stage1, out, per_task.get(t, args.steps), args.lr_scale, args.override)
        for t in args.tasks
    ]
    combined = combine_adapters(run_dirs, out / "adapters")
    base = StudentEncoder.from_pretrained(stage1 / "encoder")
    eval_cfg = eval_config(args.eval, args.full_eval)
    store = out / "results.jsonl"
    start = time.perf_counter()
    rec_stage1 = run_suite(
        base,
        eval_cfg,
        store=str(store),
        run={
            "run_id": f"stage2-stage1-{stage1.name}",
            "experiment": "stage1",
            "seed": 0,
            "model": str(stage1),
        },
    )
    rec_adapter = run_suite(
        combined,
        eval_cfg,
        store=str(store),
        run={
            "run_id": f"stage2-adapters-{stage1.name}",
            "experiment": "stage2_adapters",
            "seed": 0,
            "model": str(out / "adapters"),
        },
    )
    log.info("evaluation: %.0f s", time.perf_counter() - start)

    table = compare(summarise(rec_stage1), summarise(rec_adapter))
    steps = {t: per_task.get(t, args.steps) for t in args.tasks}
    lrs = {t: experiment_lr(t) * args.lr_scale for t in args.tasks}
    header = (
        f"Stage 2 on {stage1} (adapters: {combined.adapters}; steps {steps}; lr {lrs} (paper x {args.lr_scale:g}); "
        f"eval={args.eval}, float32, full dim {combined.dim}); scores x 100"
    )
    text = markdown(table, header)
    print(text)
    (out / "stage2_table.md").write_text(text + "\n")
    (out / "stage2_table.json").write_text(
        json.dumps(
            {
                "stage1": str(stage1),
                "steps": steps,
                "lr": lrs,
                "eval": args.eval,
                "rows": table.to_dict(orient="records"),
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
