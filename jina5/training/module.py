"""The LightningModule: encode -> (gather) -> EmbeddingBatch -> objective -> weighted sum.

    q = f(query tokens)        (B, D)      d = f(document tokens)  (B, D)
    n = f(negative tokens)     (B, K, D)   teacher vectors from the batch (cached, never computed here)
    [b_q, b_d, b_n = f_base(...) under no_grad, adapters disabled: only when a loss requires base_*]
    total, parts = objective(EmbeddingBatch(q, d, n, t_q, t_d, ..., b_q, b_d, b_n))

A texts-only batch (a ``texts_only`` data set: single texts, distillation only) has no query side:
q, n, t_q, b_q are None and d holds its texts; the objective runs only its per-text losses on it.

The base vectors are the frozen stage-1 model (the student with every adapter disabled), the fixed
reference of relational distillation (classification adapter). Computed in eval mode by default
(``base_reference_dropout=False``): a fixed target has no dropout noise, and with a fresh adapter
(B = 0) an eval-mode student equals its reference exactly.

Learnable pieces of losses (distillation projection psi, a learnable temperature) are parameters of
``self.objective`` and so are optimised and checkpointed with the encoder.

GradCache (``grad_cache.chunk_size``; Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under
Memory Limited Setup"): the loss couples every text of the (global) batch, but its gradient factors
through the embeddings, dL/dtheta = sum_i (dL/de_i) . (de_i/dtheta), so the batch never has to be in
one autograd graph. ``jina5.training.grad_cache`` does it in three passes (no-grad chunks -> loss on detached
vectors -> re-embedded chunks, RNG replayed); activation memory is that of ``chunk_size`` texts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from functools import partial

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.optim import Optimizer

from jina5.losses import EmbeddingBatch
from jina5.model.encoder import Encoder
from jina5.model.placement import run_device, trainer_setup_forwards
from jina5.training import allocator
from jina5.training.dev_metrics import dev_ndcg_at_10, distilled_cosines, similarity_agreement
from jina5.training.distributed import broadcast_from_rank0, gather_batch, world_size
from jina5.training.grad_cache import grad_cache_backward, no_backward_sync
from jina5.training.objective import Objective, find_distillation
from jina5.training.optimizer import clip_gradients, resolve_fused
from jina5.training.rng_state import restore_rng_states, rng_states
from jina5.training.schedule import check_scheduler, is_count, lr_scheduler
from jina5.training.strategies import original_name

log = logging.getLogger(__name__)


def check_grad_cache(cfg: Mapping) -> int | None:
    """``module.grad_cache`` -> its chunk size (None: off); ValueError naming the key otherwise."""
    unknown = sorted(set(cfg) - {"chunk_size"})
    if unknown:
        raise ValueError(f"unknown module.grad_cache keys {unknown}; the key is chunk_size")
    size = cfg.get("chunk_size")
    if size is not None and not is_count(size, 1):
        raise ValueError(f"module.grad_cache.chunk_size must be null (off) or an integer >= 1, got {size!r}")
    return None if size is None else int(size)


def finite_check_interval(device: torch.device, log_every_n_steps: int) -> int:
    """Steps between reads of the finite-loss flags: every step on CPU (reading costs nothing there),
    else at Lightning's log steps, which read the logged loss anyway (no extra host sync)."""
    return 1 if device.type == "cpu" else max(1, log_every_n_steps)


class EmbeddingModule(L.LightningModule):
    """Trains ``encoder`` on ``objective``. Built from the ``module`` config node
    (conf/module/default.yaml), to which ``jina5.train`` adds the encoder, objective, optimizer and scheduler.

    Args:
        encoder: the student.
        objective: weighted losses (see ``jina5.training.objective``).
        optimizer: a partial optimizer constructor (Hydra ``_partial_: true``), called with param groups.
        scheduler: {kind: constant|linear|cosine, warmup_steps, min_lr_ratio, total_steps (None: the
            trainer's max_steps)}.
        gather_across_devices: all-gather embeddings over DDP ranks, so in-batch negatives span the
            global batch (gradients flow to the local slice; DDP's averaging then gives the global
            loss's gradient).
        weight_decay_exclude_1d: no weight decay on biases, norms and scalars.
        base_reference_dropout: compute the base (adapter-off) reference in train mode, with dropout
            (default False: eval mode, a deterministic target). The paper is silent.
        projection_warm_start: before a fresh run, fit the distillation projection psi by ridge least
            squares on this many training texts (half queries, half documents) and their cached teacher
            vectors (``EmbeddingDistillation.fit_projection``); 0 keeps psi's random init. Skipped when
            psi is frozen or absent, and on resume. The paper is silent.
        grad_cache: {chunk_size: None (off) or texts per chunk}: train with GradCache
            (``jina5.training.grad_cache``) under manual optimisation; off by default, so a module built by hand
            is the plain path.
        gradient_clip_val, gradient_clip_algorithm: the trainer's clipping, done here under GradCache
            (Lightning forbids it on the Trainer under manual optimisation; ``jina5.train.build`` moves
            ``trainer.gradient_clip_val`` here). Unused by the plain path (the Trainer clips).
        keep_freed_memory: at the start of a fit, set glibc's allocator to keep freed blocks for reuse
            (``jina5.training.allocator``; Linux-glibc only); off by default, so a module built by hand
            leaves the process's allocator alone.
        merged_forward: embed a batch's query, document and negatives in one encoder forward where
            their widths allow (``Encoder.forward_many``); off by default (one forward each).
    """

    def __init__(
        self,
        encoder: Encoder,
        objective: Objective,
        optimizer: Callable,
        scheduler: dict | None = None,
        *,
        gather_across_devices: bool,
        weight_decay_exclude_1d: bool,
        base_reference_dropout: bool,
        projection_warm_start: int,
        grad_cache: Mapping | None = None,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
        keep_freed_memory: bool = False,
        merged_forward: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.objective = objective
        self.optimizer_factory = optimizer
        self.scheduler_cfg = dict(scheduler or {"kind": "constant", "warmup_steps": 0})
        check_scheduler(self.scheduler_cfg)
        self.gather_across_devices = gather_across_devices
        self.weight_decay_exclude_1d = weight_decay_exclude_1d
        self.base_reference_dropout = base_reference_dropout
        self.projection_warm_start = projection_warm_start
        self.needs_base = any(f.startswith("base_") for f in objective.required_fields())
        self.chunk_size = check_grad_cache(grad_cache or {})
        self.automatic_optimization = self.chunk_size is None
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.keep_freed_memory = keep_freed_memory
        self.merged_forward = merged_forward
        self.resuming = False  # set by jina5.train before a fit that resumes (setup cannot tell yet)
        # chosen now, by name, before any wrapping: FSDP flattens every parameter to 1-D
        self.no_decay_names = frozenset(
            n for n, p in self.named_parameters() if weight_decay_exclude_1d and p.ndim < 2
        )
        self._names_at_init = frozenset(n for n, _ in self.named_parameters())
        self._dev: list[tuple[Tensor, Tensor, Tensor]] = []
        self._unchecked: list[tuple[Tensor, int, int, str | None, Tensor, dict[str, Tensor]]] = []

    # ------------------------------------------------------------------ training
    def setup(self, stage: str) -> None:
        """The allocator setting (``keep_freed_memory``) and the projection warm start of a fresh fit.
        Lightning calls ``setup`` before the strategy moves the model and wraps it (DDP, FSDP:
        ``Trainer._run``), so the student encodes with whole weights, and DDP's constructor then
        broadcasts rank 0's psi (``warm_start_projection`` also broadcasts it, for strategies that do
        not). A resume (``resuming``, or a trainer given ``ckpt_path`` before ``fit``) skips the warm
        start: the checkpoint holds psi."""
        resuming = self.resuming or self.trainer.ckpt_path is not None
        if stage == "fit" and self.keep_freed_memory:
            allocator.keep_freed_memory()
        if stage == "fit" and self.projection_warm_start and not resuming:
            self.warm_start_projection(self.projection_warm_start)

    def warm_start_projection(self, n_texts: int) -> None:
        """Fit psi on a seeded sample of the training mix's texts (see ``projection_warm_start``), on the
        run's device and under its precision (``jina5.model.placement``); under several ranks every
        rank ends with rank 0's psi (a broadcast), whatever each rank's own fit gave."""
        distill = find_distillation(self.objective)
        if distill is None or distill.side != "student" or not distill.proj.weight.requires_grad:
            return
        datamodule = self.trainer.datamodule
        sample = datamodule.distillation_sample(n_texts) if datamodule is not None else None
        if sample is None:
            return
        device = run_device(self.trainer)
        if distill.proj.weight.device != device:
            self.to(device)
        with trainer_setup_forwards(self.encoder, self.trainer):
            queries = self.encoder.encode(sample.queries, prompt="query")
            documents = self.encoder.encode(sample.documents, prompt="document")
        teacher = np.concatenate([sample.teacher_query, sample.teacher_document])
        student = torch.from_numpy(np.concatenate([queries, documents]))
        weight = distill.proj.weight
        cos = distill.fit_projection(student.to(weight.device), torch.from_numpy(teacher).to(weight.device))
        log.info("projection warm start on %d texts: mean cos(psi(s), t) = %.3f", len(student), float(cos))
        if world_size() > 1:
            broadcast_from_rank0(distill.proj.parameters())

    def on_train_start(self) -> None:
        self.encoder.train()  # HF backbones load in eval mode; fine-tuning uses their dropout

    def on_train_end(self) -> None:
        self.check_finite()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.check_finite()  # never a checkpoint of weights a NaN loss may have updated
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_rng_states(checkpoint.get("rng_states"))

    def encode_triplet(self, batch: dict) -> tuple[Tensor | None, Tensor, Tensor | None]:
        """Query (B, D), document (B, D) and, when the batch has them, negatives (B, K, D) vectors; a
        texts-only batch (``query`` None) has only its texts, as documents. ``merged_forward``: the
        fields in one encoder forward where their widths allow (``Encoder.forward_many``)."""
        names = [f for f in ("query", "document", "negatives") if batch.get(f) is not None]
        if self.merged_forward:
            out = dict(zip(names, self.encoder.forward_many([batch[f] for f in names]), strict=True))
        else:
            out = {f: self.encoder(**batch[f]) for f in names}
        d, n = out["document"], out.get("negatives")
        if n is not None:
            n = n.view(d.shape[0], batch["negatives_per_query"], -1)
        return out.get("query"), d, n

    def embedding_batch(
        self, batch: dict, embeddings: tuple[Tensor | None, Tensor, Tensor | None] | None = None
    ) -> EmbeddingBatch:
        """The objective's input; ``embeddings`` (q, d, n) as ``encode_triplet`` returns them, when
        already computed (GradCache), else encoded here."""
        q, d, n = self.encode_triplet(batch) if embeddings is None else embeddings
        base = self.base_embeddings(batch) if self.needs_base else {}
        eb = EmbeddingBatch(
            query=q,
            document=d,
            negatives=n,
            teacher_query=batch.get("teacher_query"),
            teacher_document=batch.get("teacher_document"),
            scores=batch.get("scores"),
            query_ids=batch.get("query_ids"),
            document_ids=batch.get("document_ids"),
            **base,
        )
        if self.gather_across_devices and world_size() > 1:
            eb = gather_batch(eb)  # ranks agree on the fields and pad uneven negatives first
        return eb

    @torch.no_grad()
    def base_embeddings(self, batch: dict) -> dict[str, Tensor]:
        """{base_query (B, D) (not on a texts-only batch), base_document (B, D)[, base_negatives (B, K, D)]}:
        the student with every adapter disabled (the frozen stage-1 model), without gradients."""
        was_training = self.encoder.training
        if not self.base_reference_dropout:
            self.encoder.eval()
        try:
            with self.encoder.adapters_disabled():
                q, d, n = self.encode_triplet(batch)
        finally:
            self.encoder.train(was_training)
        out = {"base_document": d}
        if q is not None:
            out["base_query"] = q
        if n is not None:
            out["base_negatives"] = n
        return out

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        """Plain path: return the loss (Lightning backprops, clips, steps). GradCache (manual
        optimisation): zero_grad -> GradCache backward -> finite check -> log -> clip -> optimizer step ->
        lr scheduler step, the order Lightning's automatic loop follows."""
        if self.chunk_size is None:
            total, parts = self.objective(self.embedding_batch(batch))
            self.record_finite(total, parts, batch, batch_idx)
            self.log_training(total, parts, batch)
            return total
        optimizer = self.optimizers()
        optimizer.zero_grad()
        total, parts = self.grad_cache_backward(batch)
        self.record_finite(total, parts, batch, batch_idx)
        self.log_training(total, parts, batch)
        self.configure_gradient_clipping(optimizer, self.gradient_clip_val, self.gradient_clip_algorithm)
        optimizer.step()
        self.lr_schedulers().step()
        return total

    def grad_cache_backward(
        self,
        batch: dict,
        backward: Callable[[Tensor], None] | None = None,
        no_sync: Callable[[], AbstractContextManager] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The batch's (total, parts), detached, with dL/dtheta accumulated into every parameter's grad
        by GradCache (``jina5.training.grad_cache``) in chunks of ``chunk_size`` texts per field; the objective
        sees the same ``EmbeddingBatch`` as the plain path (gathered over ranks, base vectors added).
        ``backward`` and ``no_sync`` default to Lightning's (``manual_backward``, the strategy's
        ``block_backward_sync``)."""
        fields = [f for f in ("query", "document", "negatives") if batch.get(f) is not None]

        def loss(embeddings: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
            e = dict(zip(fields, embeddings, strict=True))
            n = e.get("negatives")
            if n is not None:
                n = n.view(e["document"].shape[0], batch["negatives_per_query"], -1)
            return self.objective(self.embedding_batch(batch, (e.get("query"), e["document"], n)))

        return grad_cache_backward(
            self.encoder,
            [batch[f] for f in fields],
            loss,
            list(self.objective.parameters()),
            self.chunk_size,
            backward=backward or self.manual_backward,
            no_sync=no_sync or partial(no_backward_sync, self.trainer.strategy),
        )

    def record_finite(self, total: Tensor, parts: Mapping[str, Tensor], batch: dict, batch_idx: int) -> None:
        """Record whether this step's loss (total and every part) is finite, as a device flag, and read
        the flags (``check_finite``) every ``finite_check_interval`` steps.

        Bound: a non-finite loss at step s raises at the first checked step s' >= s, s' - s < N (N the
        interval), before step s' updates the weights: at most N - 1 updates from non-finite gradients,
        none of them saved (a checkpoint checks first) and none exported (the end of training checks).
        On CPU N = 1: raised at step s itself, before its update."""
        finite = torch.stack([torch.isfinite(total), *(torch.isfinite(v).all() for v in parts.values())])
        self._unchecked.append(
            (
                finite.all(),
                self.global_step,
                batch_idx,
                batch.get("dataset"),
                total.detach(),
                {k: v.detach() for k, v in parts.items()},
            )
        )
        if (self.global_step + 1) % finite_check_interval(total.device, self.trainer.log_every_n_steps) == 0:
            self.check_finite()

    def check_finite(self) -> None:
        """Raise FloatingPointError naming the first recorded step (batch, dataset) whose loss was not
        finite; one host sync for all steps recorded since the last check."""
        if not self._unchecked:
            return
        records, self._unchecked = self._unchecked, []
        finite = torch.stack([r[0] for r in records]).cpu()
        if bool(finite.all()):
            return
        _, step, batch_idx, dataset, total, parts = records[int((~finite).nonzero()[0])]
        values = {k: float(v) for k, v in parts.items()}
        late = f" (read at step {self.global_step})" if step != self.global_step else ""
        raise FloatingPointError(
            f"non-finite loss at step {step} (batch {batch_idx}) on dataset {dataset!r}: "
            f"total={float(total)}, parts={values}{late}"
        )

    def log_training(self, total: Tensor, parts: Mapping[str, Tensor], batch: dict) -> None:
        bs = batch["document"]["input_ids"].shape[0]
        self.log("train/loss", total, batch_size=bs)  # shown by jina5.runs.progress, no per-step sync
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=bs)
        for name, value in self.objective.log_values().items():
            self.log(f"train/{name}", value, batch_size=bs)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=bs)

    # ------------------------------------------------------------------ dev check
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._dev.append((batch["rows"], self.encoder(**batch["query"]), self.encoder(**batch["document"])))

    def on_validation_epoch_end(self) -> None:
        if not self._dev:
            return
        rows = torch.cat([r for r, _, _ in self._dev])
        q = torch.cat([x for _, x, _ in self._dev])[rows.argsort()]
        d = torch.cat([x for _, _, x in self._dev])[rows.argsort()]
        self._dev.clear()
        self.log("val/ndcg@10", dev_ndcg_at_10(q, d), prog_bar=True, sync_dist=True)
        dev = getattr(self.trainer.datamodule, "dev", None)
        if dev is None or dev.teacher_document is None:
            return
        # the dev rows validated (all, unless limit_val_batches / fast_dev_run)
        seen = rows.sort().values.cpu()
        t_q = torch.from_numpy(dev.teacher_query)[seen].to(q)
        t_d = torch.from_numpy(dev.teacher_document)[seen].to(q)
        distill = find_distillation(self.objective)
        if distill is not None:
            cos = torch.cat([distilled_cosines(distill, q, t_q), distilled_cosines(distill, d, t_d)])
            self.log("val/teacher_cos", cos.mean(), sync_dist=True)
        self.log("val/teacher_sim_corr", similarity_agreement(d, t_d), sync_dist=True)
        self.log("val/teacher_ndcg@10", dev_ndcg_at_10(t_q, t_d), sync_dist=True)  # teacher, same pairs

    # ------------------------------------------------------------------ optimisation
    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the gradients before the optimizer step (the plain path: Lightning calls this with the
        trainer's settings; GradCache: ``training_step`` with the module's): ``jina5.training.optimizer.
        clip_gradients``."""
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)

    def excluded_from_decay(self, name: str, p: Tensor) -> bool:
        """Whether parameter ``name`` takes no weight decay: one of ``no_decay_names`` (biases, norms,
        scalars: 1-D or 0-D when the module was built), under its name before FSDP wrapping
        (``original_name``); a parameter added after construction by its shape."""
        name = original_name(name)
        if name in self._names_at_init:
            return name in self.no_decay_names
        return self.weight_decay_exclude_1d and p.ndim < 2

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (no_decay if self.excluded_from_decay(name, p) else decay).append(p)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = resolve_fused(self.optimizer_factory, self.device)([g for g in groups if g["params"]])
        cfg = self.scheduler_cfg
        total = cfg.get("total_steps") or (
            int(self.trainer.estimated_stepping_batches) if self.trainer else 1
        )
        scheduler = lr_scheduler(optimizer, cfg, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
