"""Each CPU speed lever trains the same model as the plain path: the first steps' losses and the final
weights of a real training run (``jina5.train.train``, a tiny BERT, pairs and texts-only batches of
varied lengths) with one lever on equal those with every lever off.

fp32: to 1e-6 (relative). The levers that keep the random stream (fused AdamW, eager attention, the
allocator) are compared with dropout on; packing and the merged forward lay the batch out differently,
so dropout masks are drawn for another layout: they are compared with dropout off (the computation,
not the noise). bf16: all levers together against the plain path, within the plain path's own bf16
rounding (``BF16_LOSS_REL``, ``BF16_WEIGHT_TOL``: see there).
"""

from __future__ import annotations

import lightning as L
import pytest
from helpers import run_cfg
from torch import nn

from jina5.train import train
from jina5.training import allocator

PLAIN = [  # every lever off: today's path before the levers
    "optimizer.fused=false",
    "student.attn_implementation=sdpa",
    "student.packing=false",
    "module.keep_freed_memory=false",
    "module.merged_forward=false",
    # no psi warm start: its ridge solve amplifies the eval-mode rounding of explicit eager against SDPA
    # attention to ~1e-6 in psi (auto keeps SDPA in eval mode; the other levers act in training only)
    "module.projection_warm_start=0",
]
LEVERS = {
    "fused_adamw": ["optimizer.fused=null"],  # auto: fused on CPU
    "eager_attention": ["student.attn_implementation=eager"],  # what auto runs for CPU training with dropout
    "keep_freed_memory": ["module.keep_freed_memory=true"],
    "packing": ["student.packing=auto"],
    # queries (narrower than the documents) join the documents' forward where the student packs
    "merged_forward": ["module.merged_forward=true", "student.packing=auto"],
}
KEEP_DROPOUT = ("fused_adamw", "eager_attention", "keep_freed_memory")
# lengths that vary (a character per token): titles as queries, bodies cut at 96 characters, and texts
DATA = [
    "~data.datasets",
    "+data.datasets={bbc: {batch_size: 8, query_max_length: 96, document_max_length: 96, max_rows: 48},"
    "bbc_texts: {corpus: bbc, texts_only: true, batch_size: 8, document_max_length: 96, max_rows: 48}}",
    "data.dev_datasets=[bbc]",
    "data.dev_pairs=16",
    "++data.held_out=null",
]
STEPS = 4
# bf16 rounding of this run, measured (relative loss; weight difference over max(1, |weights|)): the plain
# path in bf16 against itself in fp32 differs by 7e-4 in its losses and 3e-5 in its weights (the 4 steps
# move a weight by at most 4 lr = 4e-4); every lever together against the plain path, both in bf16, by
# 5e-5 and 1e-5 (other matmul shapes round differently; fp32: 2e-7 and 1e-8). The tolerances are the
# plain path's own bf16 rounding, rounded up: 10x and 10x above what the levers give.
BF16_LOSS_REL, BF16_WEIGHT_TOL = 1e-3, 1e-4


class Record(L.Callback):
    """Each step's loss, the path it took (the optimizer's ``fused`` flag, the attention implementation
    and the number of the backbone's training forwards, packed forwards, allocator settings) and the
    final weights; ``dropout`` False sets every dropout probability to 0 at the start."""

    def __init__(self, dropout: bool) -> None:
        self.dropout, self.losses, self.weights, self.fused = dropout, [], {}, None
        self.attention, self.forwards, self.packed = set(), 0, 0

    def on_train_start(self, trainer, module) -> None:
        self.fused = trainer.optimizers[0].defaults.get("fused")
        if not self.dropout:
            for m in module.modules():
                if isinstance(m, nn.Dropout):
                    m.p = 0.0
        encoder = module.encoder
        encoder.backbone.register_forward_pre_hook(self.forward)
        packed_hidden = encoder.packed_hidden

        def counted(packed, kwargs):
            self.packed += 1
            return packed_hidden(packed, kwargs)

        encoder.packed_hidden = counted

    def forward(self, backbone, args) -> None:
        if backbone.training:
            self.forwards += 1
            self.attention.add(backbone.config._attn_implementation)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))

    def on_train_end(self, trainer, module) -> None:
        self.weights = {k: v.detach().clone() for k, v in module.state_dict().items()}


def fit(tmp_path, name: str, *overrides: str, dropout: bool = True, precision: str = "fp32") -> Record:
    rec = Record(dropout)
    cfg = run_cfg(
        tmp_path / name,
        f"precision={precision}",
        *DATA,
        *PLAIN,
        *overrides,
        f"trainer.max_steps={STEPS}",
        f"trainer.val_check_interval={STEPS}",
        "export=false",
    )
    train(cfg, callbacks=[rec])
    return rec


def assert_same_training(got: Record, ref: Record, loss_rel: float, weight_tol: float) -> None:
    """Each step's loss within ``loss_rel`` (relative), each final weight within ``weight_tol`` times
    max(1, the tensor's largest entry)."""
    assert len(got.losses) == len(ref.losses) == STEPS
    assert got.losses == pytest.approx(ref.losses, rel=loss_rel)
    assert got.weights.keys() == ref.weights.keys()
    for name, w in ref.weights.items():
        scale = max(1.0, float(w.abs().max()))
        assert (got.weights[name] - w).abs().max() <= weight_tol * scale, name


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> dict[bool, Record]:
    """The plain path's fp32 runs, with dropout on and off."""
    tmp = tmp_path_factory.mktemp("plain")
    return {dropout: fit(tmp, f"plain-{dropout}", dropout=dropout) for dropout in (True, False)}


def assert_lever_ran(lever: str, got: Record, ref: Record, kept: list[bool]) -> None:
    """The lever's path was taken (and the plain run's was not)."""
    assert bool(got.fused) == (lever == "fused_adamw") and not ref.fused
    assert ref.attention == {"sdpa"} and got.attention == {"eager" if lever == "eager_attention" else "sdpa"}
    assert ref.packed == 0 and (got.packed > 0) == (lever in ("packing", "merged_forward"))
    assert (got.forwards < ref.forwards) == (lever == "merged_forward")
    assert kept == ([True] if lever == "keep_freed_memory" else [])


@pytest.mark.parametrize("lever", sorted(LEVERS))
def test_each_lever_trains_the_same_model_fp32(tmp_path, plain, lever, monkeypatch):
    dropout = lever in KEEP_DROPOUT
    kept = []
    keep = allocator.keep_freed_memory
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: kept.append(keep()) or kept[-1])
    got = fit(tmp_path, lever, *LEVERS[lever], dropout=dropout)
    ref = plain[dropout]
    assert_lever_ran(lever, got, ref, kept)
    assert_same_training(got, ref, 1e-6, 1e-6)


def test_all_levers_train_the_same_model_bf16(tmp_path):
    ref = fit(tmp_path, "plain", dropout=False, precision="bf16")
    got = fit(
        tmp_path,
        "levers",
        *(o for overrides in LEVERS.values() for o in overrides),
        dropout=False,
        precision="bf16",
    )
    assert got.fused and got.attention == {"eager"} and got.packed > 0 and got.forwards < ref.forwards
    assert_same_training(got, ref, BF16_LOSS_REL, BF16_WEIGHT_TOL)
