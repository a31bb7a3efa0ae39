"""The default student's inference graphs scored on the evaluation suite: each row's averages, and its
difference to torch fp32 with a paired bootstrap interval (``jina5.eval.bootstrap``: the same test-item
resamples for both rows; 1,000 resamples, 95% percentile interval).

    python experiments/eval_exports.py [--export outputs/exports/default_student]
                                       [--results outputs/results/exports.jsonl] [--out table.md] [overrides...]

Rows: torch fp32 (the directory's weights), ONNX, ONNX int8, OpenVINO, OpenVINO int8 (every graph in fp32
compute: ``jina5-evaluate model=<export> backend=... quantize=... precision=fp32``); ``overrides`` go to
every evaluation (e.g. ``eval=smoke``). The export is made as ``experiments/bench_inference.py`` makes it.
Each row is filed as experiment ``<export name>-<row>`` in the results store, whose cache makes a rerun
score only what changed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_inference import default_student_export
from jina5.conf import compose

from jina5.eval.bootstrap import MissingItems, paired_intervals, row_replicates, run_items
from jina5.eval.store import ResultsStore
from jina5.eval.summary import type_averages
from jina5.evaluate import evaluate

ROWS = {
    "torch fp32": ["backend=torch"],
    "ONNX": ["backend=onnx"],
    "ONNX int8": ["backend=onnx", "quantize=int8"],
    "OpenVINO": ["backend=openvino"],
    "OpenVINO int8": ["backend=openvino", "quantize=int8"],
}
LEVELS = ("overall", "retrieval", "sts", "classification", "clustering")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", type=Path, default=Path("outputs/exports/default_student"))
    ap.add_argument("--results", type=Path, default=Path("outputs/results/exports.jsonl"))
    ap.add_argument("--out", type=Path, help="write the markdown table here (and .json beside it)")
    ap.add_argument("overrides", nargs="*", help="config overrides for every evaluation, e.g. eval=smoke")
    args = ap.parse_args(argv)

    export = default_student_export(args.export)
    store = ResultsStore(args.results)
    runs = {}
    for name, graph in ROWS.items():
        label = f"{export.name}-{name.lower().replace(' ', '_')}"
        cfg = compose(
            [
                f"model={export}",
                f"results={args.results}",
                f"label={label}",
                "progress=false",
                "precision=fp32",
            ]
            + graph
            + list(args.overrides),
            "eval",
        )
        runs[name] = store.read(run_id=evaluate(cfg)["run"]["run_id"])

    reference = row_replicates([run_items(store, runs["torch fp32"])])
    rows = {}
    for name, run in runs.items():
        row = {"float32": type_averages(run), "binary": type_averages(run, precision="binary")}
        try:
            intervals = paired_intervals(row_replicates([run_items(store, run)]), reference)
            row["vs_torch_fp32"] = {
                level: intervals[level].as_dict() for level in LEVELS if level in intervals
            }
        except MissingItems as e:
            row["vs_torch_fp32"] = {"missing": str(e)}
        rows[name] = row

    lines = [
        f"| row ({export.name}) | overall | retrieval | sts | classification | clustering | binary overall | "
        "overall - torch fp32 [95% CI] |",
        "|---|" + "---:|" * 7,
    ]
    for name, row in rows.items():
        diff = row["vs_torch_fp32"].get("overall")
        cell = (
            f"{100 * diff['delta']:+.2f} [{100 * diff['low']:+.2f}, {100 * diff['high']:+.2f}] {diff['verdict']}"
            if diff
            else row["vs_torch_fp32"].get("missing", "")
        )
        values = " | ".join(f"{100 * row['float32'].get(level, float('nan')):.2f}" for level in LEVELS)
        lines.append(
            f"| {name} | {values} | {100 * row['binary'].get('overall', float('nan')):.2f} | {cell} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
