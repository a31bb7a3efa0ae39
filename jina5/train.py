"""Training entry point (Hydra). Read top to bottom: build, fit, export.

    python -m jina5.train experiment=ablation/combined
    python -m jina5.train -m experiment=ablation/pure_distill,ablation/pure_contrastive,ablation/combined seed=0,1

    python -m jina5.train experiment=adapter/retrieval init_from=outputs/runs/pure_distill-seed0   # stage 2

The run directory (``outputs/runs/<experiment>-seed<seed>``) receives ``checkpoints/last.ckpt`` (and
the best), ``encoder/`` (the exported student), ``config.yaml`` (the resolved config), the CSV
training log and ``done.json`` (steps, wall time, last metrics). A rerun resumes from ``last.ckpt``
and skips a run whose ``done.json`` exists, after checking that the directory's ``config.yaml`` holds the
same settings (``jina5.run_config``; ``trainer.max_steps`` may grow: that extends the run).

Stage 2 (``adapter`` config set, experiments ``adapter/<task>``): the student is the stage-1 run's
``encoder/`` (``init_from``; without it a fresh adapter goes on the configured student, logged), a
LoRA adapter ``adapter.task`` is added on the frozen backbone, and the distillation projection
starts from the stage-1 run's ``checkpoints/last.ckpt`` (``objective.losses.distill.proj.*``). With
``adapter.average_with`` the final weights average ``last.ckpt`` with an earlier checkpoint
(``jina5.averaging``; written to ``checkpoints/averaged.ckpt``) before ``encoder/`` is exported
(base weights + ``adapters/<task>/``).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from jina5.adapters import adapter_settings, check_task, lora_config
from jina5.averaging import SaveAtSteps, average_checkpoints, other_checkpoint, parse_average_with
from jina5.csv_logger import AlignLogStep, ResumableCSVLogger
from jina5.encoder import StudentEncoder
from jina5.module import EmbeddingModule, find_distillation
from jina5.objective import Objective, build_objective
from jina5.run_config import check_same_run

log = logging.getLogger(__name__)


def checkpoint_step(ckpt_path: str | None) -> int:
    """``global_step`` of a Lightning checkpoint (0 for None); memory-mapped, so big ones load cheaply."""
    if ckpt_path is None:
        return 0
    return int(torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)["global_step"])


def resolve_checkpoint(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``last`` -> the run's last.ckpt if it exists (else a fresh start); a path must exist."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.exists() else None
    if not Path(ckpt_path).exists():
        raise FileNotFoundError(f"ckpt_path={ckpt_path!r} does not exist")
    return ckpt_path


def build_student(cfg: DictConfig) -> StudentEncoder:
    """The student: ``init_from``'s ``encoder/`` (stage 2) or ``cfg.student``, plus the task adapter
    when ``cfg.adapter`` is set."""
    init_from = cfg.get("init_from")
    if init_from:
        encoder_dir = Path(init_from) / "encoder"
        if not encoder_dir.is_dir():
            raise FileNotFoundError(
                f"init_from={init_from!r}: no encoder/ directory (is it a finished stage-1 run dir?)"
            )
        encoder = StudentEncoder.from_pretrained(encoder_dir)
        if encoder.adapters:
            raise ValueError(
                f"init_from={init_from!r}: its encoder already has adapters {encoder.adapters}; "
                "init_from takes a stage-1 run"
            )
        log.info("init_from %s: the student is its encoder/ (student.* settings are not used)", init_from)
    else:
        encoder = instantiate(cfg.student)
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
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
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


def module_options(cfg: DictConfig) -> dict:
    """``cfg.module``; a stage-2 run keeps its stage-1 projection, so no warm start there."""
    options = OmegaConf.to_container(cfg.get("module") or {})
    if cfg.get("init_from"):
        options["projection_warm_start"] = 0
    return options


def build(
    cfg: DictConfig, callbacks: Sequence[L.Callback] = ()
) -> tuple[EmbeddingModule, L.LightningDataModule, L.Trainer]:
    """Student, teacher, data, objective and trainer from the config (nothing runs yet)."""
    encoder = build_student(cfg)
    if encoder.dim != cfg.student_dim:
        raise ValueError(
            f"config key student_dim={cfg.student_dim} but the student {cfg.student.source} has dim {encoder.dim}"
        )
    teacher = instantiate(cfg.teacher) if cfg.get("teacher") and cfg.get("use_teacher", True) else None
    if teacher is not None and teacher.dim != cfg.teacher_dim:
        raise ValueError(
            f"config key teacher_dim={cfg.teacher_dim} but the teacher {cfg.teacher.source} has dim {teacher.dim}"
        )
    datamodule = instantiate(cfg.data, encoder=encoder, teacher=teacher)
    objective = build_objective(cfg.objective)
    if cfg.get("init_from"):
        load_stage1_projection(objective, cfg.init_from)
    module = EmbeddingModule(
        encoder,
        objective,
        optimizer=instantiate(cfg.optimizer),
        scheduler=OmegaConf.to_container(cfg.scheduler),
        **module_options(cfg),
    )
    all_callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()] + list(callbacks)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=all_callbacks, logger=instantiate(cfg.logger))
    return module, datamodule, trainer


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> dict:
    """Fit (resuming from last.ckpt when there is one), then write checkpoint, encoder, config, done.json."""
    run_dir = Path(cfg.paths.output_dir)
    done_file = run_dir / "done.json"
    ckpt_path = resolve_checkpoint(cfg.ckpt_path, run_dir)
    if (cfg.skip_done and done_file.exists()) or ckpt_path is not None:  # about to reuse this directory
        check_same_run(cfg, run_dir)
    if cfg.skip_done and done_file.exists():
        done = json.loads(done_file.read_text())
        if done["steps"] >= cfg.trainer.max_steps:
            log.info("%s is finished (done.json); skipping (set skip_done=false to retrain)", run_dir)
            return done
        log.warning(
            "%s: extending a finished run from %d to %d steps (resuming last.ckpt; with scheduler."
            "total_steps=null the lr schedule's horizon moves too)",
            run_dir,
            done["steps"],
            cfg.trainer.max_steps,
        )
    L.seed_everything(cfg.seed, workers=True)
    adapter = cfg.get("adapter") or {}
    average = parse_average_with(adapter.get("average_with"))
    extra = list(callbacks)
    if average is not None and average[0] == "step":
        if not 0 < average[1] < cfg.trainer.max_steps:
            raise ValueError(
                f"adapter.average_with=step={average[1]} must be a step in (0, trainer.max_steps="
                f"{cfg.trainer.max_steps})"
            )
        extra.append(SaveAtSteps(run_dir, [average[1]]))
    module, datamodule, trainer = build(cfg, extra)
    encoder = module.encoder

    final = FinalState(run_dir)
    start = time.perf_counter()
    trainer.callbacks.extend([final, AlignLogStep()])
    run_dir.mkdir(parents=True, exist_ok=True)
    # written before fitting: what a resumed or rerun run is checked against
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    if isinstance(trainer.logger, ResumableCSVLogger):
        trainer.logger.keep_before_step = checkpoint_step(ckpt_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    seconds = time.perf_counter() - start

    # Under ddp_spawn this process only gets rank 0's weights back: the step and metrics come from disk.
    state = json.loads(final.path.read_text())
    summary = {
        "run_dir": str(run_dir),
        "experiment": cfg.experiment_name,
        "seed": cfg.seed,
        "steps": state["global_step"],
        "train_seconds": state["train_seconds"],
        "fit_seconds": round(seconds, 1),
        "metrics": state["metrics"],
    }
    if average is not None and average[0] == "step" and state["global_step"] <= average[1]:
        log.warning(
            "adapter.average_with=%s: the run ended at step %d, before that checkpoint; final weights are "
            "last.ckpt's (no averaging)",
            adapter.average_with,
            state["global_step"],
        )
    elif average is not None:
        summary["averaged_with"] = average_final_weights(module, trainer, run_dir, adapter)
    if cfg.export:
        encoder.save_pretrained(run_dir / "encoder")
    done_file.write_text(json.dumps(summary, indent=2))
    log.info(
        "finished %s: %d steps in %.0f s (%.0f s with data and teacher-cache setup)",
        run_dir,
        state["global_step"],
        state["train_seconds"],
        seconds,
    )
    return summary


def average_final_weights(
    module: EmbeddingModule, trainer: L.Trainer, run_dir: Path, adapter: DictConfig
) -> str:
    """Load w * last + (1 - w) * other into ``module`` (``jina5.averaging``), save it as
    ``checkpoints/averaged.ckpt`` and return the other checkpoint's path."""
    best = (
        getattr(trainer.checkpoint_callback, "best_model_path", None) if trainer.checkpoint_callback else None
    )
    other = other_checkpoint(run_dir, adapter.average_with, best or None)
    last = run_dir / "checkpoints" / "last.ckpt"
    weight = float(adapter.get("average_weight", 0.5))
    state = average_checkpoints(last, other, weight)
    module.load_state_dict(state)
    torch.save(
        {"state_dict": state, "averaged": {"last": str(last), "other": str(other), "weight": weight}},
        run_dir / "checkpoints" / "averaged.ckpt",
    )
    log.info("final weights: %.2f x %s + %.2f x %s", weight, last.name, 1 - weight, other.name)
    return str(other)


class FinalState(L.Callback):
    """At the end of fit, in every training process: save ``checkpoints/last.ckpt`` and (rank 0)
    ``final_state.json`` with the global step, the last logged metrics and the training loop's wall
    time (``train_seconds``: from the first step's start, so without data setup and teacher caching)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / "final_state.json"
        self.start = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.run_dir / "checkpoints" / "last.ckpt")
        if trainer.is_global_zero:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
            seconds = round(time.perf_counter() - self.start, 1)
            self.path.write_text(
                json.dumps({"global_step": trainer.global_step, "metrics": metrics, "train_seconds": seconds})
            )


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
