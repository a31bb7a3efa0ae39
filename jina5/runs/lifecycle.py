"""A training run's directory, from reuse checks to ``done.json``: everything around ``trainer.fit``.

The run directory (``outputs/runs/<run_name>``) receives ``config.yaml`` (the resolved config, written
before fitting), ``checkpoints/last.ckpt`` (and the best), ``curves.jsonl`` (every logged metric, whatever the logger:
``jina5.runs.curves``), the configured logger's files (``logs/metrics.csv`` by default), ``final_state.json``,
``encoder/`` (the exported student), ``done.json`` (steps, wall time, last metrics) and ``run.lock``
(``jina5.runs.lock``: one live training process per directory, held from step 1 to step 3). Its lifecycle:

1. reuse: a directory with ``done.json`` (``skip_done``) or ``last.ckpt`` (``ckpt_path=last``) is reused
   only if its ``config.yaml`` holds the same settings (``jina5.runs.config``); a finished run is skipped
   if it trained on the data the config reads now (``jina5.runs.data_identity``), unless
   ``trainer.max_steps`` grew: then it is extended from ``last.ckpt``; a checkpoint to resume that cannot
   be read fails here, naming the file (``jina5.runs.checkpoints``). A resumed or extended run's data is
   checked in its data module's setup, against ``data_manifest.json``'s newest start
   (``jina5.data.manifest``; ``accept_changed_data=true`` accepts changed data there and in the skip);
2. start: the curve record keeps the values logged before the resumed step; ``FinalState``,
   ``AlignLogStep`` and ``LogConfig`` (the resolved config to every logger as hyperparameters) join the
   trainer's callbacks (and ``SaveAtSteps`` when the final weights average with a step checkpoint);
3. finish, on global rank 0 alone (every rank of ``strategy=ddp``, torchrun or SLURM runs ``train``;
   the others wait at a barrier and receive its summary): the step and metrics are read back from
   ``final_state.json`` (under ddp_spawn the launching process only gets rank 0's weights back),
   ``adapter.average_with`` averages ``last.ckpt`` with an earlier checkpoint (``jina5.runs.averaging``;
   ``checkpoints/averaged.ckpt``), the encoder is exported (with
   the inference settings ``export.rope_theta`` / ``export.max_seq_length`` when set) and ``done.json``
   is written.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from jina5.assets import cache_root
from jina5.atomic import atomic_write_text
from jina5.data.manifest import ACCEPT_KEY, MANIFEST_FILE
from jina5.model.card import card_from_config
from jina5.model.encoder import Encoder
from jina5.runs.averaging import SaveAtSteps, average_checkpoints, other_checkpoint, parse_average_with
from jina5.runs.checkpoints import atomic_save, checkpoint_step, read_checkpoint
from jina5.runs.config import check_same_run, export_settings
from jina5.runs.curves import CurveRecord
from jina5.runs.data_identity import check_same_data
from jina5.runs.init_from import build_student
from jina5.runs.lock import RunLock
from jina5.runs.loggers import AlignLogStep, LogConfig

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


def exportable_encoder(
    module: L.LightningModule, trainer: L.Trainer, cfg: DictConfig, run_dir: Path
) -> Encoder:
    """The trained student to export after fit: ``module.encoder``, or under FSDP (which wrapped the
    student's blocks in place, each rank holding a shard of their weights) a fresh student
    (``jina5.runs.init_from.build_student``: the same architecture and adapter) loaded with the full weights
    of ``<run_dir>/checkpoints/last.ckpt``, the file rank 0 wrote at the end of fit."""
    if not isinstance(trainer.strategy, FSDPStrategy):
        return module.encoder
    state = read_checkpoint(run_dir / "checkpoints" / "last.ckpt", mmap=False)["state_dict"]
    encoder = build_student(cfg)
    encoder.load_state_dict(
        {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    )
    return encoder


#: directories that are one per machine on a cluster node (``$TMPDIR`` too, when set)
NODE_LOCAL_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def check_shared_cache(num_nodes: int) -> Path | None:
    """On a multi-node run, warn (and return the cache root) when the jina5 cache (``JINA5_CACHE``: the
    teacher store, split manifests) is under a node-local directory (:data:`NODE_LOCAL_DIRS`,
    ``$TMPDIR``): the ranks on the other nodes would not see the teacher store rank 0 fills. Only
    these known node-local paths are caught; whether another path is shared is not checked."""
    if num_nodes <= 1:
        return None
    root = Path(os.path.abspath(cache_root(create=False)))
    local = [Path(d) for d in NODE_LOCAL_DIRS]
    if os.environ.get("TMPDIR", "/") != "/":
        local.append(Path(os.path.abspath(os.environ["TMPDIR"])))
    if not any(root == d or d in root.parents for d in local):
        return None
    log.warning(
        "trainer.num_nodes=%d: the jina5 cache (teacher vectors, split manifests) is at %s, a node-local "
        "path, so the ranks of the other nodes will not find the teacher store rank 0 fills. Set JINA5_CACHE to "
        "a directory on a shared file system that every node mounts (docs/scaling.md)",
        num_nodes,
        root,
    )
    return root


class Run:
    """The run directory ``cfg.paths.output_dir`` of one training config; see the module docstring.

    ``train`` calls :meth:`check_reuse`, then builds and passes :meth:`callbacks` to the trainer,
    :meth:`start` before ``trainer.fit(..., ckpt_path=run.ckpt_path)`` and :meth:`finish` after it.
    """

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.dir = Path(cfg.paths.output_dir)
        self.done_file = self.dir / "done.json"
        self.ckpt_path = resolve_checkpoint(cfg.ckpt_path, self.dir)
        self.adapter = cfg.get("adapter") or {}
        self.average = parse_average_with(self.adapter.get("average_with"))
        self.final = FinalState(self.dir)
        self.started = time.perf_counter()
        self.resume_step = 0

    def lock(self) -> RunLock:
        """The run directory's lock (``jina5.runs.lock``), held from the reuse check to ``done.json``; only
        global rank 0 takes it (ranks launched as separate scripts run ``train`` too)."""
        return RunLock(self.dir, enabled=rank_zero_only.rank == 0)

    def check_reuse(self) -> dict | None:
        """Raise if the directory about to be reused holds another config; the finished run's
        ``done.json`` when it is to be skipped, else None (a fresh, resumed or extended run)."""
        cfg = self.cfg
        skip = cfg.skip_done and self.done_file.exists()
        if skip or self.ckpt_path is not None:
            check_same_run(cfg, self.dir)
        done = json.loads(self.done_file.read_text()) if skip else None
        if done is not None and done["steps"] >= cfg.trainer.max_steps:
            check_same_data(cfg, self.dir)
            log.info("%s is finished (done.json); skipping (set skip_done=false to retrain)", self.dir)
            return done
        self.resume_step = checkpoint_step(self.ckpt_path)  # an unreadable checkpoint fails here, named
        if done is None:
            return None
        log.warning(
            "%s: extending a finished run from %d to %d steps (resuming last.ckpt; with scheduler."
            "total_steps=null the lr schedule's horizon moves too)",
            self.dir,
            done["steps"],
            cfg.trainer.max_steps,
        )
        return None

    def callbacks(self) -> list[L.Callback]:
        """Callbacks the trainer is built with: ``SaveAtSteps`` when the final weights average with the
        checkpoint of a step (``adapter.average_with=step=<n>``)."""
        if self.average is None or self.average[0] != "step":
            return []
        max_steps = self.cfg.trainer.max_steps
        if not 0 < self.average[1] < max_steps:
            ways = ["adapter.average_with=null (no averaging)"]
            if max_steps > 1:
                ways.insert(0, f"an earlier step, e.g. adapter.average_with={max_steps // 2} (half the run)")
            raise ValueError(
                f"adapter.average_with=step={self.average[1]} must be a step in (0, trainer.max_steps="
                f"{max_steps}): set {' or '.join(ways)}; an int n means step=n ('step=n' on a Hydra "
                "command line needs quotes: 'adapter.average_with=\"step=n\"')"
            )
        return [SaveAtSteps(self.dir, [self.average[1]])]

    def start(self, trainer: L.Trainer, datamodule: L.LightningDataModule | None = None) -> None:
        """Just before fitting: write ``config.yaml`` (what a resumed or rerun run is checked against),
        add ``FinalState``, ``AlignLogStep`` and ``LogConfig`` (that config, to every logger), keep the
        curve record's values before the resumed step, and tell a data module that records its manifest
        (``PairDataModule``) the step this run resumes at (None: a fresh start) and whether changed data
        is accepted."""
        self.started = time.perf_counter()
        if getattr(datamodule, "manifest_dir", None) is not None:
            datamodule.resume_step = self.resume_step if self.ckpt_path is not None else None
            datamodule.accept_changed_data = bool(self.cfg.get(ACCEPT_KEY))
        if trainer.is_global_zero:  # ranks launched as separate scripts run ``train`` too
            check_shared_cache(trainer.num_nodes)
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.dir / "config.yaml", OmegaConf.to_yaml(self.cfg, resolve=True))
        config = OmegaConf.to_container(self.cfg, resolve=True)
        trainer.callbacks.extend([self.final, AlignLogStep(), LogConfig(config)])
        for logger in trainer.loggers:
            if isinstance(logger, CurveRecord):
                logger.keep_before_step = self.resume_step

    def finish(self, module: L.LightningModule, trainer: L.Trainer) -> dict:
        """After fitting, on every rank: global rank 0 averages the final weights if asked, exports the
        encoder and writes ``done.json``; the others wait for it (the broadcast of its summary is the
        barrier), so no rank reads a file rank 0 has not written, and every rank returns the same
        summary. A rank-0 failure is re-raised on every rank rather than left hanging."""
        summary, error = None, None
        if trainer.is_global_zero:
            try:
                summary = self.finish_on_rank_zero(module, trainer)
            except BaseException as err:
                error = err
        failed = None if error is None else f"{type(error).__name__}: {error}"
        trainer.strategy.barrier("jina5.runs.lifecycle.finish")
        summary, failed = trainer.strategy.broadcast((summary, failed), src=0)
        if error is not None:
            raise error
        if failed is not None:
            raise RuntimeError(f"global rank 0 failed to finish {self.dir}: {failed}")
        return summary

    def finish_on_rank_zero(self, module: L.LightningModule, trainer: L.Trainer) -> dict:
        """Average the final weights if asked, export the encoder, write and return ``done.json``'s
        summary (global rank 0 only: ``final_state.json`` is its file)."""
        seconds = time.perf_counter() - self.started
        state = json.loads(self.final.path.read_text())
        summary = {
            "run_dir": str(self.dir),
            "experiment": self.cfg.experiment_name,
            "seed": self.cfg.seed,
            "steps": state["global_step"],
            "train_seconds": state["train_seconds"],
            "fit_seconds": round(seconds, 1),
            "metrics": state["metrics"],
        }
        average = self.average
        if average is not None and average[0] == "step" and state["global_step"] <= average[1]:
            log.warning(
                "adapter.average_with=%s: the run ended at step %d, before that checkpoint; final weights "
                "are last.ckpt's (no averaging)",
                self.adapter.average_with,
                state["global_step"],
            )
        elif average is not None:
            summary["averaged_with"] = average_final_weights(module, trainer, self.dir, self.adapter)
        export = export_settings(self.cfg.get("export"))
        if export is not None:  # the model card gets the run's objective, Matryoshka dims and metrics
            manifest = self.dir / MANIFEST_FILE  # the training data of the card (rank 0 wrote it at setup)
            card = card_from_config(
                OmegaConf.to_container(self.cfg, resolve=True),
                summary,
                json.loads(manifest.read_text()) if manifest.exists() else None,
            )
            exportable_encoder(module, trainer, self.cfg, self.dir).save_pretrained(
                self.dir / "encoder",
                card=card,
                rope_theta=export["rope_theta"],
                max_length=export["max_seq_length"],
            )
        atomic_write_text(self.done_file, json.dumps(summary, indent=2))
        log.info(
            "finished %s: %d steps in %.0f s (%.0f s with data and teacher-cache setup)",
            self.dir,
            state["global_step"],
            state["train_seconds"],
            seconds,
        )
        return summary


def average_final_weights(
    module: L.LightningModule, trainer: L.Trainer, run_dir: Path, adapter: DictConfig
) -> str:
    """Load w * last + (1 - w) * other into ``module`` (``jina5.runs.averaging``), save it as
    ``checkpoints/averaged.ckpt`` and return the other checkpoint's path."""
    best = (
        getattr(trainer.checkpoint_callback, "best_model_path", None) if trainer.checkpoint_callback else None
    )
    other = other_checkpoint(run_dir, adapter.average_with, best or None)
    last = run_dir / "checkpoints" / "last.ckpt"
    weight = float(adapter.get("average_weight", 0.5))
    state = average_checkpoints(last, other, weight)
    module.load_state_dict(state)
    atomic_save(
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
