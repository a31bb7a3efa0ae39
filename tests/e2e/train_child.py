"""A training process for the crash tests (tests/unit/runs/test_checkpoints.py): a toy run that pauses at a step.

    python tests/train_child.py OUTPUT_ROOT PAUSE_STEP OVERRIDE...

At the end of step PAUSE_STEP it writes ``OUTPUT_ROOT/paused`` (holding its PID), then waits until the
file ``OUTPUT_ROOT/go`` exists (at most 120 s): the test kills or signals it in between. Every step's
loss is appended to ``OUTPUT_ROOT/losses.jsonl``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import lightning as L

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: helpers

from helpers import run_cfg  # noqa: E402

from jina5.train import train  # noqa: E402


class PauseAt(L.Callback):
    def __init__(self, root: Path, step: int) -> None:
        self.root, self.step = root, step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        with open(self.root / "losses.jsonl", "a") as f:
            f.write(json.dumps({"step": trainer.global_step, "loss": float(outputs["loss"])}) + "\n")
        if trainer.global_step == self.step:
            (self.root / "paused").write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while not (self.root / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)


if __name__ == "__main__":
    root, step, *overrides = sys.argv[1:]
    train(run_cfg(Path(root), *overrides), callbacks=[PauseAt(Path(root), int(step))])
