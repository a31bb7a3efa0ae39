"""What experiments/bench_train.py measures of each contender: its timed rounds (:class:`Contender`),
the texts its encoder saw, in order, and whether bf16 autocast was on (:class:`TokenLog`), and the timed
window of one round on each trainer (:class:`LightningWindow` for ours, :class:`HFWindow` for
sentence-transformers'): wall seconds, the process's CPU seconds (every thread, user and system) and its
minor page faults, from the start of the first timed step to the end of the last.
"""

from __future__ import annotations

import hashlib
import resource
import statistics
import time
from dataclasses import dataclass, field

import lightning as L
import torch
from torch import nn
from transformers import TrainerCallback


@dataclass
class Contender:
    """One side of the table: who trains, at which precision, and its timed rounds."""

    name: str  # "jina5" | "sentence-transformers"
    precision: str  # ours: the `precision` key (fp32 | auto); theirs: fp32 | bf16
    variant: str = ""  # ours: the speed levers it runs with (bench_train_levers.variants)
    trainer_precision: str = ""  # what it ran as (Lightning's precision, or HF's)
    seconds: list[float] = field(default_factory=list)  # timed window of each round
    cpu_seconds: list[float] = field(default_factory=list)  # the process's CPU time in it
    faults: list[int] = field(default_factory=list)  # minor page faults in it
    tokens: str = ""  # digest of every text's token ids, in the order the backbone saw them
    texts: int = 0  # texts the backbone saw (all steps of one round)
    autocast: set[bool] = field(default_factory=set)  # bf16 autocast on during its forwards (each seen)

    def pairs_per_s(self, pairs: int) -> float:
        return pairs / statistics.median(self.seconds)

    def record(self, window: Window) -> None:
        """Add one round's timed window."""
        self.seconds.append(window.end - window.start)
        self.cpu_seconds.append(window.cpu_end - window.cpu_start)
        self.faults.append(window.faults_end - window.faults_start)


class TokenLog:
    """Forward pre-hook on the module that takes the padded token ids (our ``Encoder``, called with
    ``input_ids=, attention_mask=``, before any packing; sentence-transformers' ``Transformer`` module,
    called with a features dict): every text's token ids (unpadded), in the order seen, and whether CPU
    autocast to bf16 was on (what a precision setting actually did)."""

    def __init__(self, backbone: nn.Module) -> None:
        self.digest, self.texts, self.autocast = hashlib.sha1(), 0, set()
        self.handle = backbone.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        features = kwargs if "input_ids" in kwargs else args[0]
        ids, mask = features["input_ids"], features["attention_mask"].bool()
        for row, keep in zip(ids, mask, strict=True):
            self.digest.update(row[keep].numpy().astype("int64").tobytes() + b"|")
        self.texts += ids.shape[0]
        bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        self.autocast.add(bf16)

    def close(self, contender: Contender) -> None:
        self.handle.remove()
        contender.tokens, contender.texts = self.digest.hexdigest(), self.texts
        contender.autocast |= self.autocast


def _now() -> tuple[float, float, int]:
    """(wall seconds, the process's CPU seconds, its minor page faults so far)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_utime + usage.ru_stime, usage.ru_minflt


class Window:
    """The timed window from the start of step ``warmup`` (0-based) to the end of the last step, and
    each timed step's (wall, CPU) seconds (``steps``)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.end = self.cpu_start = self.cpu_end = 0.0
        self.faults_start = self.faults_end = 0
        self.steps: list[tuple[float, float]] = []
        self._step_start = (0.0, 0.0, 0)

    def begin(self, step: int) -> None:
        self._step_start = _now()
        if step == self.warmup:
            self.start, self.cpu_start, self.faults_start = self._step_start

    def finish(self, step: int) -> None:
        self.end, self.cpu_end, self.faults_end = _now()
        if step >= self.warmup:
            self.steps.append((self.end - self._step_start[0], self.cpu_end - self._step_start[1]))


class LightningWindow(Window, L.Callback):
    """:class:`Window` on Lightning's batches."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.begin(batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.finish(batch_idx)


class HFWindow(Window, TrainerCallback):
    """:class:`Window` on the HF Trainer's steps."""

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        self.begin(state.global_step)

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.finish(state.global_step - 1)  # global_step counts the step just done
