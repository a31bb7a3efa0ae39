"""Sentence-transformers' side of experiments/bench_train.py: the same rows in the same order as a
``datasets.Dataset``, our exported student as a ``SentenceTransformer``, the matching loss (MNRL, or
``EmbedDistillLoss`` from our psi) and ``SentenceTransformerTrainer`` with the same optimisation; one
timed round of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import datasets
from accelerate.state import AcceleratorState
from bench_contender import Contender, HFWindow, TokenLog
from omegaconf import DictConfig
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.base.sampler import DefaultBatchSampler
from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss, MultipleNegativesRankingLoss
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from torch import nn
from torch.utils.data import SequentialSampler
from transformers import TrainerCallback

from jina5.data.datamodule import PairDataModule
from jina5.training.module import EmbeddingModule
from jina5.training.objective import find_distillation

TAU = 0.02  # conf/objective/default.yaml: infonce.temperature


def st_dataset(
    datamodule: PairDataModule, keys: list[list[tuple[int, int]]], objective: str
) -> datasets.Dataset:
    """The batches' rows, batch after batch: {query, document[, label (2, Dt): teacher q, d]}."""
    rows = [key for batch in keys for key in batch]
    tables = datamodule.tables
    columns = {
        "query": [tables[t].queries[r] for t, r in rows],
        "document": [tables[t].documents[r] for t, r in rows],
    }
    if objective == "distill":
        columns["label"] = [
            [tables[t].teacher_query[r].tolist(), tables[t].teacher_document[r].tolist()] for t, r in rows
        ]
    return datasets.Dataset.from_dict(columns)


class InOrderBatchSampler(DefaultBatchSampler):
    """Consecutive rows in dataset order (the dataset is laid out batch by batch)."""

    def __init__(self, dataset, batch_size: int, drop_last: bool, **kwargs) -> None:
        super().__init__(SequentialSampler(dataset), batch_size=batch_size, drop_last=drop_last, **kwargs)


def st_student(exported: Path, max_seq_length: int) -> SentenceTransformer:
    """Our student as a SentenceTransformer (loaded from ``Encoder.save_pretrained``'s directory), the
    BERT pooler dropped as ours does. A fresh one per Trainer: accelerate marks a model it prepared and
    never prepares it again, so a reused model keeps the first Trainer's autocast (or lack of it)."""
    model = SentenceTransformer(str(exported), device="cpu")
    model.max_seq_length = max_seq_length
    if getattr(model[0].auto_model, "pooler", None) is not None:
        model[0].auto_model.pooler = None
    return model


def st_loss(model: SentenceTransformer, objective: str, module: EmbeddingModule) -> nn.Module:
    """MNRL at scale 1/tau, or cosine EmbedDistillLoss whose projection starts at our psi."""
    if objective == "infonce":
        return MultipleNegativesRankingLoss(model, scale=1 / TAU)
    psi = find_distillation(module.objective).proj
    loss = EmbedDistillLoss(model, distance_metric="cosine", projection_dim=psi.out_features)
    loss.projection.load_state_dict(psi.state_dict())
    return loss


def st_trainer(
    model: SentenceTransformer,
    loss: nn.Module,
    dataset: datasets.Dataset,
    cfg: DictConfig,
    bf16: bool,
    total: int,
    batch_size: int,
    out_dir: str,
    callbacks: Sequence[TrainerCallback] = (),
) -> SentenceTransformerTrainer:
    prompts = dict(cfg.student.prompts)
    # accelerate's state is process-wide: a fresh one, so that each Trainer gets its own mixed precision
    AcceleratorState._reset_state(reset_partial_state=True)
    args = SentenceTransformerTrainingArguments(
        output_dir=out_dir,
        max_steps=total,
        per_device_train_batch_size=batch_size,
        learning_rate=cfg.optimizer.lr,
        weight_decay=cfg.optimizer.weight_decay,
        adam_beta1=cfg.optimizer.betas[0],
        adam_beta2=cfg.optimizer.betas[1],
        optim="adamw_torch",
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=cfg.trainer.gradient_clip_val,
        use_cpu=True,
        bf16=bf16,
        prompts={"query": prompts["query"], "document": prompts["document"]},
        batch_sampler=InOrderBatchSampler,
        dataloader_drop_last=True,
        save_strategy="no",
        report_to="none",
        logging_strategy="no",
        disable_tqdm=True,
        seed=cfg.seed,
    )
    return SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset, loss=loss, callbacks=list(callbacks)
    )


def train_st(
    exported: Path,
    max_seq_length: int,
    objective: str,
    module: EmbeddingModule,
    dataset: datasets.Dataset,
    cfg: DictConfig,
    contender: Contender,
    total: int,
    warmup: int,
    batch_size: int,
    out_dir: str,
) -> HFWindow:
    """One round of sentence-transformers' trainer on a fresh model from ``exported`` (at
    ``max_seq_length`` tokens); the timed window."""
    model = st_student(exported, max_seq_length)
    bf16 = contender.precision == "bf16"
    contender.trainer_precision = "bf16 (HF Trainer, CPU autocast)" if bf16 else "fp32"
    window = HFWindow(warmup)
    loss = st_loss(model, objective, module)
    trainer = st_trainer(model, loss, dataset, cfg, bf16, total, batch_size, out_dir, [window])
    log = TokenLog(model[0])  # its backbone's forward is called directly, past any hook
    trainer.train()
    log.close(contender)
    return window
