"""Training entry point (Hydra): compose, instantiate, fit, finish.

    python -m jina5.train experiment=ablation/combined
    python -m jina5.train -m experiment=ablation/pure_distill,ablation/pure_contrastive,ablation/combined seed=0,1

    python -m jina5.train experiment=adapter/retrieval init_from=outputs/runs/pure_distill-seed0   # stage 2

The run directory's lifecycle (reuse checks, resume, extend, ``done.json``) is ``jina5.runs.lifecycle``; what a
stage-2 run takes from its stage-1 run (``init_from``) and the task adapter is ``jina5.runs.init_from``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from jina5.conf.checks import check_run_config
from jina5.data.mix import check_mix_config
from jina5.runs.checkpoints import AtomicCheckpointIO, exit_on_signal
from jina5.runs.completion import run_with_nested_completion
from jina5.runs.init_from import build_student, load_stage1_projection, module_overrides
from jina5.runs.lifecycle import Run
from jina5.runs.loggers import build_loggers
from jina5.runs.multirun import check_multirun
from jina5.runs.progress import LossProgressBar
from jina5.teacher.precompute import main as precompute_main
from jina5.training.module import EmbeddingModule
from jina5.training.objective import build_objective, check_objective_config
from jina5.training.schedule import check_scheduler
from jina5.training.strategies import check_fsdp

log = logging.getLogger(__name__)


def build(
    cfg: DictConfig, callbacks: Sequence[L.Callback] = ()
) -> tuple[EmbeddingModule, L.LightningDataModule, L.Trainer]:
    """Student, teacher, data, objective, module and trainer from the config (nothing runs yet).

    The trainer's loggers are ``cfg.logger`` (one, a dict of several, or none) and the run's curve
    record (``jina5.runs.loggers.build_loggers``).

    The order is the order of their random draws (model loading, the distillation projection's init):
    keep it. The objective and scheduler settings are checked first (a typo fails before any model is
    loaded); data sizes are checked by the data module's setup, before mining and teacher caching."""
    check_run_config(cfg)
    check_mix_config(cfg.data)
    check_objective_config(cfg.objective)
    check_scheduler(cfg.scheduler)
    encoder = build_student(cfg)
    teacher = instantiate(cfg.teacher) if cfg.get("teacher") and cfg.get("use_teacher", True) else None
    datamodule = instantiate(cfg.data, encoder=encoder, teacher=teacher)
    if getattr(datamodule, "manifest_dir", "") is None:  # a PairDataModule not told where: the run directory
        datamodule.manifest_dir = cfg.paths.output_dir
    objective = build_objective(
        cfg.objective, student_dim=encoder.dim, teacher_dim=teacher.dim if teacher is not None else None
    )
    if not objective.texts_only_losses() and hasattr(datamodule, "leave_out_texts_only"):
        dropped = datamodule.leave_out_texts_only()  # no loss trains on their batches: no wasted steps
        if dropped:
            log.info("texts-only datasets %s left out: no loss with a nonzero weight trains on them", dropped)
    if cfg.get("init_from"):
        load_stage1_projection(objective, cfg.init_from)
    clipping = gradient_clipping_moved(cfg)
    module = instantiate(
        cfg.module,
        encoder=encoder,
        objective=objective,
        optimizer=instantiate(cfg.optimizer),
        scheduler=OmegaConf.to_container(cfg.scheduler),
        **clipping,
        **module_overrides(cfg),
    )
    all_callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()] + list(callbacks)
    if cfg.trainer.get("enable_progress_bar", True):
        all_callbacks.append(LossProgressBar())
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=all_callbacks,
        logger=build_loggers(cfg),
        plugins=[AtomicCheckpointIO()],
        **dict.fromkeys(clipping),  # None on the Trainer: the module clips
    )
    check_fsdp(
        trainer.strategy,
        module,
        (cfg.get("adapter") or {}).get("average_with"),
        precision=trainer.precision_plugin.precision,
        grad_cache=module.chunk_size,
    )
    return module, datamodule, trainer


def gradient_clipping_moved(cfg: DictConfig) -> dict:
    """{gradient_clip_val, gradient_clip_algorithm} of ``cfg.trainer`` when GradCache is on, else {}.

    GradCache trains under manual optimisation, where Lightning refuses a Trainer with
    ``gradient_clip_val > 0``; so that every config keeps working unchanged, ``build`` hands the
    trainer's values to the module (which clips before its optimizer step) and None to the Trainer."""
    if cfg.module.get("grad_cache", {}).get("chunk_size") is None:
        return {}
    return {k: cfg.trainer.get(k) for k in ("gradient_clip_val", "gradient_clip_algorithm")}


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> dict:
    """Fit (resuming from last.ckpt when there is one), then finish the run; returns done.json's summary.

    The run directory is locked throughout; SIGTERM or Ctrl-C saves last.ckpt and exits with 128 + the
    signal number, without done.json (``jina5.runs.checkpoints``)."""
    run = Run(cfg)
    with run.lock():
        done = run.check_reuse()
        if done is not None:
            return done
        L.seed_everything(cfg.seed, workers=True)
        module, datamodule, trainer = build(cfg, [*callbacks, *run.callbacks()])
        run.start(trainer, datamodule)
        module.resuming = run.ckpt_path is not None  # its setup (the warm start) runs before the restore
        with exit_on_signal(trainer):
            trainer.fit(module, datamodule=datamodule, ckpt_path=run.ckpt_path)
        return run.finish(module, trainer)


@hydra.main(version_base="1.3", config_path="pkg://jina5.conf", config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()  # a multirun of multi-rank trainings needs a launcher that starts ranks
    check_multirun(cfg.trainer, hydra_cfg.mode == RunMode.MULTIRUN, hydra_cfg.launcher.get("_target_"))
    train(cfg)


def main() -> None:
    """``jina5-train`` / ``python -m jina5.train``: Hydra's command line, whose tab completion also
    lists nested experiment values (``experiment=ablation/combined``; ``jina5.runs.completion``)."""
    run_with_nested_completion(hydra_main, "train")


def teacher_main() -> None:
    """``jina5-teacher`` / ``python -m jina5.teacher``: pre-compute the teacher vectors of a training
    config (``jina5.teacher.precompute``; the training command line), with ``jina5-train``'s tab
    completion. The console script lives here because ``jina5.runs.completion`` sits above the teacher
    package."""
    run_with_nested_completion(precompute_main, "train")


if __name__ == "__main__":
    main()
