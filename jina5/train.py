"""Training entry point (Hydra). Read top to bottom: build, fit, export.

    python -m jina5.train experiment=ablation/combined
    python -m jina5.train -m experiment=ablation/pure_distill,ablation/pure_contrastive,ablation/combined seed=0,1

The run directory (``outputs/runs/<experiment>-seed<seed>``) receives ``checkpoints/last.ckpt`` (and
the best), ``encoder/`` (the exported student), ``config.yaml`` (the resolved config), the CSV
training log and ``done.json`` (steps, wall time, last metrics). A rerun resumes from ``last.ckpt``
and skips a run whose ``done.json`` exists.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from jina5.module import EmbeddingModule
from jina5.objective import build_objective

log = logging.getLogger(__name__)


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


def build(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> tuple[EmbeddingModule, L.LightningDataModule, L.Trainer]:
    """Student, teacher, data, objective and trainer from the config (nothing runs yet)."""
    encoder = instantiate(cfg.student)
    if encoder.dim != cfg.student_dim:
        raise ValueError(f"config key student_dim={cfg.student_dim} but the student {cfg.student.source} has dim {encoder.dim}")
    teacher = instantiate(cfg.teacher) if cfg.get("teacher") else None
    if teacher is not None and teacher.dim != cfg.teacher_dim:
        raise ValueError(f"config key teacher_dim={cfg.teacher_dim} but the teacher {cfg.teacher.source} has dim {teacher.dim}")
    datamodule = instantiate(cfg.data, encoder=encoder, teacher=teacher)
    module = EmbeddingModule(
        encoder, build_objective(cfg.objective), optimizer=instantiate(cfg.optimizer),
        scheduler=OmegaConf.to_container(cfg.scheduler),
    )
    all_callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()] + list(callbacks)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=all_callbacks, logger=instantiate(cfg.logger))
    return module, datamodule, trainer


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> dict:
    """Fit (resuming from last.ckpt when there is one), then write checkpoint, encoder, config, done.json."""
    run_dir = Path(cfg.paths.output_dir)
    done_file = run_dir / "done.json"
    if cfg.skip_done and done_file.exists():
        log.info("%s is finished (done.json); skipping (set skip_done=false to retrain)", run_dir)
        return json.loads(done_file.read_text())
    L.seed_everything(cfg.seed, workers=True)
    module, datamodule, trainer = build(cfg, callbacks)
    encoder = module.encoder

    final = FinalState(run_dir)
    start = time.perf_counter()
    trainer.callbacks.append(final)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resolve_checkpoint(cfg.ckpt_path, run_dir))
    seconds = time.perf_counter() - start

    # Under ddp_spawn this process only gets rank 0's weights back: the step and metrics come from disk.
    state = json.loads(final.path.read_text())
    summary = {"run_dir": str(run_dir), "experiment": cfg.experiment_name, "seed": cfg.seed,
               "steps": state["global_step"], "train_seconds": round(seconds, 1), "metrics": state["metrics"]}
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    if cfg.export:
        encoder.save_pretrained(run_dir / "encoder")
    done_file.write_text(json.dumps(summary, indent=2))
    log.info("finished %s: %d steps in %.0f s", run_dir, state["global_step"], seconds)
    return summary


class FinalState(L.Callback):
    """At the end of fit, in every training process: save ``checkpoints/last.ckpt`` and (rank 0)
    ``final_state.json`` with the global step and the last logged metrics."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / "final_state.json"

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.run_dir / "checkpoints" / "last.ckpt")
        if trainer.is_global_zero:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
            self.path.write_text(json.dumps({"global_step": trainer.global_step, "metrics": metrics}))


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
