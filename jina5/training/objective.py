"""The training objective: a weighted sum of named losses, each also reported on its own.

    total = sum_{name : w_name != 0} w_name * L_name(batch)

An ablation is a config, not a code path: ``weights: {distill: 1, infonce: 0, gor: 0}``. A loss with
weight 0 is still computed (under ``torch.no_grad``) and returned in ``parts`` with its true value,
so every run logs every objective, but it contributes no gradient.

Batches that lack a loss's inputs: a loss may declare ``requires``, a tuple of EmbeddingBatch field
names. With ``skip_missing=False`` (default) a batch missing any of them raises a ValueError naming
the loss and fields; with ``skip_missing=True`` that loss is skipped for the batch and is absent from
``parts``. ``skip_if_present`` is the other half of a per-batch switch: ``{loss: [fields]}`` skips
that loss on every batch where any of those fields is present (not None). The text-matching adapter
switches per batch this way: CoSENT requires ``scores`` (skipped on unscored batches by
``skip_missing``), InfoNCE and distillation are skipped where ``scores`` is present.

Texts-only batches (``EmbeddingBatch.texts_only``: single texts, no queries, no pairs; a data set with
``texts_only: true``) are the third switch, and it needs no config: a loss that needs a pair (every
loss unless it sets ``needs_pairs = False``: InfoNCE, GOR, score distillation, CoSENT, relational) is
skipped on them and absent from ``parts``, whatever ``skip_missing`` says; a per-text loss
(distillation) runs on their texts, its ``requires`` narrowed to the fields such a batch can have
(``EmbeddingBatch.applicable``). ``texts_only_losses()`` names the losses that train there: none in a
pure-contrastive run, whose data module then leaves the texts-only data sets out
(``jina5.train.build``).

Under more than one rank a skipped loss's trainable parameters (the text-matching adapter's projection
psi on a scored batch, a learnable temperature on a texts-only batch) still enter the graph, through an
exact zero (``jina5.training.distributed.exact_zero``: a sum over an empty slice, 0 even for a NaN parameter):

    total += sum_{p of a skipped loss} 0

so every parameter gets a gradient (zeros) and DDP's default ``find_unused_parameters=False`` holds;
every rank skips the same losses (they draw the same dataset, and ``jina5.training.distributed`` checks that
their fields agree). One process adds nothing: its graph and gradients are as without this.
Under DDP those parameters thus get a zero gradient where one process leaves theirs None: an optimizer
with momentum (AdamW) still moves them on such a step.

The losses live in an ``nn.ModuleDict``, so their learnable pieces (the distillation projection, a
learnable temperature) are parameters of the Objective, optimised and checkpointed with the model.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from jina5.losses.batch import EmbeddingBatch
from jina5.losses.distill import EmbeddingDistillation
from jina5.training.distributed import exact_zero, world_size


class Objective(nn.Module):
    """Weighted dict of losses; ``forward(batch) -> (total, parts)``; see the module docstring.

    Args:
        losses: name -> loss module (EmbeddingBatch -> scalar).
        weights: name -> weight >= 0; exactly the same names as ``losses``.
        skip_missing: skip (rather than raise on) a loss whose ``requires`` fields are None.
        skip_if_present: loss name -> EmbeddingBatch fields; the loss is skipped on batches having any.

    ``parts`` maps each computed loss's name to its unweighted value (attached to the graph when the
    weight is nonzero, detached when it is 0). ``total`` is a 0-d tensor; if no loss with a nonzero
    weight ran on the batch it is a constant 0 that does not require grad.
    """

    def __init__(
        self,
        losses: Mapping[str, nn.Module],
        weights: Mapping[str, float],
        skip_missing: bool = False,
        skip_if_present: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__()
        losses = {str(k): v for k, v in losses.items()}
        weights = {str(k): v for k, v in weights.items()}
        for name in losses:
            if name not in weights:
                raise ValueError(
                    f"Objective: loss {name!r} has no entry in objective weights {sorted(weights)}"
                )
        for name in weights:
            if name not in losses:
                raise ValueError(f"Objective: weight {name!r} has no loss; losses are {sorted(losses)}")
        for name, loss in losses.items():
            if not isinstance(loss, nn.Module):
                raise TypeError(f"Objective: loss {name!r} must be an nn.Module, got {type(loss).__name__}")
        self.weights: dict[str, float] = {}
        for name, w in weights.items():
            try:
                w = float(w)
            except (TypeError, ValueError):
                raise ValueError(f"Objective: weight {name!r} must be a number, got {w!r}") from None
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"Objective: weight {name!r} must be finite and >= 0, got {w}")
            self.weights[name] = w
        self.losses = nn.ModuleDict(losses)
        for name, loss in self.losses.items():
            if self.weights[name] == 0.0:  # no gradient reaches it: freeze it (DDP rejects unused parameters)
                loss.requires_grad_(False)
        self.skip_missing = skip_missing
        fields = {f.name for f in dataclasses.fields(EmbeddingBatch)}
        self.skip_if_present: dict[str, list[str]] = {}
        for name, present in (skip_if_present or {}).items():
            if name not in self.losses:
                raise ValueError(
                    f"Objective: skip_if_present names loss {name!r}; losses are {sorted(self.losses)}"
                )
            unknown = [f for f in present if f not in fields]
            if unknown:
                raise ValueError(f"Objective: skip_if_present[{name!r}] has unknown batch fields {unknown}")
            self.skip_if_present[str(name)] = [str(f) for f in present]

    def required_fields(self) -> set[str]:
        """Every EmbeddingBatch field some loss requires (e.g. ``base_query`` for relational distillation)."""
        return {f for loss in self.losses.values() for f in getattr(loss, "requires", ())}

    def needs_pairs(self, name: str) -> bool:
        """Whether loss ``name`` needs (query, document) pairs, i.e. is skipped on texts-only batches."""
        return bool(getattr(self.losses[name], "needs_pairs", True))

    def texts_only_losses(self) -> list[str]:
        """The losses that train (nonzero weight) on texts-only batches; [] means such batches would
        train nothing."""
        return [n for n in self.losses if self.weights[n] != 0.0 and not self.needs_pairs(n)]

    def missing_fields(self, name: str, batch: EmbeddingBatch) -> list[str]:
        """The fields loss ``name`` requires that are None in ``batch`` (on a texts-only batch, of those
        such a batch can have)."""
        requires = tuple(getattr(self.losses[name], "requires", ()))
        return [f for f in batch.applicable(requires) if getattr(batch, f) is None]

    def skips(self, name: str, batch: EmbeddingBatch) -> bool:
        """Whether loss ``name`` is skipped on ``batch`` (texts-only, ``skip_if_present``,
        ``skip_missing``); a missing field without ``skip_missing`` raises a ValueError naming it."""
        if batch.texts_only and self.needs_pairs(name):
            return True
        if any(getattr(batch, f) is not None for f in self.skip_if_present.get(name, ())):
            return True
        missing = self.missing_fields(name, batch)
        if missing and not self.skip_missing:
            raise ValueError(
                f"Objective: loss {name!r} needs batch fields {missing}, which are None "
                "(set skip_missing=True to skip it on such batches)"
            )
        return bool(missing)

    def forward(self, batch: EmbeddingBatch) -> tuple[Tensor, dict[str, Tensor]]:
        total: Tensor | None = None
        parts: dict[str, Tensor] = {}
        untouched: list[Tensor] = []  # trainable parameters of the skipped losses
        for name, loss in self.losses.items():
            if self.skips(name, batch):
                untouched.extend(p for p in loss.parameters() if p.requires_grad)
                continue
            w = self.weights[name]
            if w == 0.0:
                with torch.no_grad():
                    parts[name] = loss(batch).detach()
                continue
            value = loss(batch)
            parts[name] = value
            total = w * value if total is None else total + w * value
        if untouched and world_size() > 1:  # DDP (find_unused_parameters=False) needs them in the graph
            touch = sum(exact_zero(p) for p in untouched)
            total = touch if total is None else total + touch
        if total is None:
            total = batch.document.new_zeros(())
        return total, parts

    def log_values(self) -> dict[str, Tensor]:
        """Extra scalars the losses expose (e.g. ``infonce/temperature``), keyed ``name/key``."""
        out: dict[str, Tensor] = {}
        for name, loss in self.losses.items():
            if hasattr(loss, "log_values"):
                out.update({f"{name}/{k}": v for k, v in loss.log_values().items()})
        return out


OBJECTIVE_KEYS = ("losses", "weights", "binary_aware", "matryoshka", "skip_missing", "skip_if_present")
MATRYOSHKA_KEYS = ("enabled", "dims", "weights")


def find_distillation(objective: nn.Module) -> EmbeddingDistillation | None:
    """The objective's distillation loss (the first ``EmbeddingDistillation`` among its modules), or None."""
    return next((m for m in objective.modules() if isinstance(m, EmbeddingDistillation)), None)


def check_objective_config(cfg: Mapping) -> None:
    """Raise KeyError naming an ``objective`` config key that is unknown or names no loss: top-level keys
    (:data:`OBJECTIVE_KEYS`), ``matryoshka`` keys (:data:`MATRYOSHKA_KEYS`), ``weights`` names that
    ``losses`` does not define, ``binary_aware`` / ``skip_if_present`` names that ``weights`` does not
    list, a loss node without ``_target_``. A check of the config alone: ``jina5.train.build`` runs it
    before any model is loaded, data is read or the teacher caches a text."""
    unknown = set(cfg) - set(OBJECTIVE_KEYS)
    if unknown:
        raise KeyError(f"unknown objective config keys {sorted(unknown)}; expected {sorted(OBJECTIVE_KEYS)}")
    unknown = set(cfg.get("matryoshka") or {}) - set(MATRYOSHKA_KEYS)
    if unknown:
        raise KeyError(
            f"unknown objective.matryoshka config keys {sorted(unknown)}; expected {list(MATRYOSHKA_KEYS)}"
        )
    weights, losses = [str(k) for k in cfg["weights"]], cfg["losses"]
    undefined = sorted(set(weights) - set(losses))
    if undefined:
        raise KeyError(
            f"objective.weights names {undefined}, which objective.losses does not define "
            f"(it defines {sorted(losses)})"
        )
    for key, names in (
        ("binary_aware", cfg.get("binary_aware") or []),
        ("skip_if_present", cfg.get("skip_if_present") or {}),
    ):
        for name in names:
            if name not in weights:
                raise KeyError(
                    f"objective.{key} names {name!r}, which is not in objective.weights {sorted(weights)}"
                )
    for name in weights:
        if "_target_" not in losses[name]:
            raise KeyError(f"objective.losses.{name} has no _target_ (the loss class to build)")


def build_objective(cfg: Mapping, student_dim: int, teacher_dim: int | None = None) -> Objective:
    """Objective from the ``objective`` config node (see conf/objective/base.yaml).

    ``weights``: name -> weight; only the losses named there are built (in ``losses`` order, so the
    RNG draws of their construction do not depend on the weights), a weight of 0 included.
    ``losses``: name -> Hydra node of a loss; a loss whose constructor takes ``student_dim`` /
    ``teacher_dim`` gets the loaded models' dims (``teacher_dim=None``: no teacher is loaded, and such a
    loss is an error). ``binary_aware``: names of losses computed on straight-through sign embeddings
    (``BinaryAware``); ``matryoshka``: {enabled, dims, weights}: when enabled every loss is wrapped in
    ``Matryoshka`` (outermost, so a binary-aware loss is binarised after truncation);
    ``skip_missing`` / ``skip_if_present``: the per-batch switches of ``Objective``.
    """
    from jina5.losses import BinaryAware, Matryoshka

    check_objective_config(cfg)
    weights = {str(k): v for k, v in cfg["weights"].items()}
    mrl = cfg.get("matryoshka") or {}
    too_big = [int(d) for d in mrl.get("dims") or []] if mrl.get("enabled") else []
    too_big = [d for d in too_big if d > student_dim]
    if too_big:
        raise ValueError(
            f"objective.matryoshka.dims {too_big} exceed the student's embedding dim {student_dim}: "
            f"drop them (or disable objective.matryoshka)"
        )
    dims = {"student_dim": student_dim, "teacher_dim": teacher_dim}
    losses: dict[str, nn.Module] = {
        name: _build_loss(name, node, dims) for name, node in cfg["losses"].items() if name in weights
    }
    for name in cfg.get("binary_aware") or []:
        losses[name] = BinaryAware(losses[name])
    if mrl.get("enabled"):
        mrl_dims, mrl_weights = list(mrl["dims"]), mrl.get("weights")
        losses = {
            n: Matryoshka(loss, mrl_dims, None if mrl_weights is None else list(mrl_weights))
            for n, loss in losses.items()
        }
    skip_if_present = {k: list(v) for k, v in (cfg.get("skip_if_present") or {}).items()}
    return Objective(
        losses,
        weights,
        skip_missing=bool(cfg.get("skip_missing", False)),
        skip_if_present=skip_if_present,
    )


def _build_loss(name: str, node: Mapping, dims: Mapping[str, int | None]) -> nn.Module:
    """Instantiate one loss node, passing it the model dims its constructor takes."""
    from hydra.utils import get_class, instantiate

    takes = inspect.signature(get_class(node["_target_"])).parameters
    wanted = {key: value for key, value in dims.items() if key in takes}
    if wanted.get("teacher_dim", 0) is None:
        raise ValueError(
            f"objective.losses.{name} ({node['_target_']}) needs the teacher's dim, but no teacher is "
            "loaded (use_teacher=false or no teacher config): drop it from objective.weights or load a teacher"
        )
    return instantiate(node, **wanted)
