"""Stage-2 assembly: what a run takes from a stage-1 run (``init_from``) and the task adapter it adds.

    student    = <init_from>/encoder/ (else cfg.student)  [+ LoRA adapter ``adapter.task``, backbone frozen]
                 built with ``student.rope_theta`` when set (the training RoPE base; ``jina5.model.rope``)
    psi        = objective.losses.distill.proj.* of <init_from>/checkpoints/last.ckpt
    warm start = off (psi is already fitted; ``module.projection_warm_start`` applies to fresh psi only)

Without ``init_from`` a fresh adapter goes on the configured student (logged as a warning).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from jina5.model.adapters import adapter_settings, check_task, lora_config
from jina5.model.encoder import Encoder
from jina5.model.rope import check_rope
from jina5.runs.checkpoints import read_checkpoint
from jina5.runs.config import export_settings
from jina5.training.objective import Objective, find_distillation

log = logging.getLogger(__name__)


def build_student(cfg: DictConfig) -> Encoder:
    """The student: ``init_from``'s ``encoder/`` (stage 2) or ``cfg.student``, plus the task adapter
    when ``cfg.adapter`` is set."""
    init_from = cfg.get("init_from")
    if init_from:
        encoder_dir = Path(init_from) / "encoder"
        if not encoder_dir.is_dir():
            raise FileNotFoundError(
                f"init_from={init_from!r}: no encoder/ directory (is it a finished stage-1 run dir?)"
            )
        theta = cfg.student.get("rope_theta")  # the training theta, at construction (jina5.model.rope)
        encoder = Encoder.from_pretrained(encoder_dir, **({} if theta is None else {"rope_theta": theta}))
        if encoder.adapters:
            raise ValueError(
                f"init_from={init_from!r}: its encoder already has adapters {encoder.adapters}; "
                "init_from takes a stage-1 run"
            )
        log.info(
            "init_from %s: the student is its encoder/ (student.* settings are not used, but rope_theta)",
            init_from,
        )
    else:
        encoder = instantiate(cfg.student)
    export = export_settings(cfg.get("export"))
    if export is not None and export["rope_theta"] is not None:  # fail before training, not at export
        check_rope(encoder.backbone.config, "export.rope_theta")
    adapter = cfg.get("adapter")
    if adapter:
        task = check_task(adapter.task)
        if not init_from:
            log.warning(
                "adapter %r without init_from: a fresh LoRA adapter on the configured student %s, not on "
                "a stage-1 run (set init_from=<stage-1 run dir> for stage 2)",
                task,
                cfg.student.source,
            )
        settings = adapter_settings(adapter)
        config = lora_config(encoder.backbone.config.model_type, **settings)
        prompts = adapter.get("prompts", {}).get(task)
        encoder.add_adapter(task, config, prompts=dict(prompts) if prompts is not None else None)
        trainable = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
        total = sum(p.numel() for p in encoder.parameters())
        log.info(
            "adapter %r: LoRA rank %s on %s; %d of %d student parameters trainable",
            task,
            config.r,
            sorted(config.target_modules),
            trainable,
            total,
        )
    return encoder


_PROJECTION_KEY = re.compile(r"^objective\.losses\.distill\.(?:inner\.)*proj\.(weight|bias)$")


def load_stage1_projection(objective: Objective, run_dir: str | Path) -> None:
    """Copy the stage-1 run's distillation projection psi (``objective.losses.distill.proj.*`` of its
    ``checkpoints/last.ckpt``) into ``objective``'s distillation loss (if it has one)."""
    distill = find_distillation(objective)
    if distill is None:
        return
    ckpt = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        raise FileNotFoundError(
            f"init_from={str(run_dir)!r}: no {ckpt} to take the distillation projection from"
        )
    state = read_checkpoint(ckpt, mmap=False)["state_dict"]
    found = {m.group(1): v for k, v in state.items() if (m := _PROJECTION_KEY.match(k))}
    if not found:
        log.warning(
            "init_from %s: %s holds no distillation projection; psi keeps its fresh init", run_dir, ckpt
        )
        return
    own = distill.proj.state_dict()
    for name, value in found.items():
        if name not in own or own[name].shape != value.shape:
            raise ValueError(
                f"init_from {ckpt}: projection {name} has shape {tuple(value.shape)}, this objective's "
                f"is {tuple(own[name].shape) if name in own else 'absent'} (another teacher or student?)"
            )
    requires_grad = [p.requires_grad for p in distill.proj.parameters()]
    distill.proj.load_state_dict(found)
    for p, flag in zip(distill.proj.parameters(), requires_grad, strict=True):
        p.requires_grad_(flag)
    log.info(
        "init_from %s: distillation projection loaded (%s), trainable=%s",
        run_dir,
        sorted(found),
        any(requires_grad),
    )


def module_overrides(cfg: DictConfig) -> dict:
    """Arguments of ``EmbeddingModule`` that differ from ``cfg.module`` in a stage-2 run: a run that
    starts from a stage-1 run keeps its stage-1 projection, so no warm start there."""
    return {"projection_warm_start": 0} if cfg.get("init_from") else {}
