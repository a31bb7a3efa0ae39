"""What experiments/bench_train.py measures of each contender: its timed rounds (:class:`Contender`),
the texts its backbone saw, in order, and whether bf16 autocast was on (:class:`TokenLog`), and the timed
window of one round on each trainer (:class:`LightningWindow` for ours, :class:`HFWindow` for
sentence-transformers').
"""

from __future__ import annotations

import hashlib
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
    trainer_precision: str = ""  # what it ran as (Lightning's precision, or HF's)
    seconds: list[float] = field(default_factory=list)  # timed window of each round
    tokens: str = ""  # digest of every text's token ids, in the order the backbone saw them
    texts: int = 0  # texts the backbone saw (all steps of one round)
    autocast: set[bool] = field(default_factory=set)  # bf16 autocast on during its forwards (each seen)

    def pairs_per_s(self, pairs: int) -> float:
        return pairs / statistics.median(self.seconds)


class TokenLog:
    """Forward pre-hook on the module that takes the token ids (our HF backbone, called with
    ``input_ids=, attention_mask=``; sentence-transformers' ``Transformer`` module, called with a
    features dict): every text's token ids (unpadded), in the order seen, and whether CPU autocast
    to bf16 was on (what a precision setting actually did)."""

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


class LightningWindow(L.Callback):
    """Seconds from the start of batch ``warmup`` to the end of the last batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.end = time.perf_counter()


class HFWindow(TrainerCallback):
    """Seconds from the start of step ``warmup`` (0-based) to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        if state.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.end = time.perf_counter()
