"""Checkpoints that survive crashes: atomic writes, ``last.ckpt`` on a step cadence and on SIGINT/SIGTERM,
and a named error for one that cannot be read.

- **Atomic writes** (:func:`atomic_save`, :class:`AtomicCheckpointIO`, the trainer's checkpoint IO): the
  checkpoint is written to ``.<name>.tmp-<pid>`` in the same directory, fsynced, then renamed over the
  old file (and the directory fsynced). A crash or a full disk mid-write leaves the previous checkpoint
  whole; the temporary file is removed when the write fails.
- **Cadence** (:class:`LastCheckpoint`): ``last.ckpt`` is rewritten every ``every_n_steps`` optimizer
  steps (null: at every dev check, ``trainer.val_check_interval``), so a SIGKILL redoes at most one
  cadence of steps. Lightning's ``ModelCheckpoint`` keeps the best by dev nDCG, but it rewrites
  ``last.ckpt`` only when it saves a best: after a kill the resume point could be arbitrarily old.
- **Signals.** SIGTERM (a scheduler's preemption; Lightning raises ``SIGTERMException`` at the next step
  boundary, after any dev check) and a first Ctrl-C (SIGINT; a second one stops at once) save
  ``last.ckpt`` at the end of the current step, then stop the run without ``done.json``: rerunning the
  same command resumes it. Under several ranks the ranks agree on a Ctrl-C (a collective, so a host sync)
  every ``signal_check_every_n_steps`` steps (10) and at dev checks: it stops at the next such step.
  The exit status is 128 + the signal's number (143 for SIGTERM, 130 for SIGINT).

Every save happens at a step boundary, after that step's dev check if one is due (a checkpoint taken
before a due dev check would skip it on resume), so a resumed run repeats an unbroken one exactly.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from jina5.atomic import atomic_file

log = logging.getLogger(__name__)


class CheckpointReadError(RuntimeError):
    """A checkpoint file cannot be read (truncated, corrupt, not a checkpoint); the message names it."""


class TrainingInterrupted(SystemExit):
    """A signal stopped training at a step boundary (after saving ``last.ckpt``): the process exits with
    128 + the signal number, as a shell reports a process killed by it."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(128 + signum)
        self.signum, self.step = signum, step


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)`` that never leaves a partial ``path`` (``jina5.atomic``)."""
    with atomic_file(path) as fh:
        torch.save(obj, fh)


class AtomicCheckpointIO(TorchCheckpointIO):
    """The trainer's checkpoint IO (every ``trainer.save_checkpoint``: last, best, step checkpoints)
    with :func:`atomic_save`; loading names the file when it cannot be read."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}")
        atomic_save(checkpoint, path)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = "cpu", weights_only: bool | None = None
    ) -> dict:
        """The checkpoint at ``path``, onto the CPU by default (as Lightning's ``TorchCheckpointIO``:
        its strategies pass no map_location, and None would put every rank's copy on the device the
        tensors were saved from, GPU 0). A checkpoint that reads on the CPU but not with the
        ``map_location`` given (a CUDA one on a host without CUDA) is intact: that error says so."""
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except FileNotFoundError:
            raise
        except Exception as err:  # torch raises RuntimeError, OSError, pickle errors, EOFError, ...
            if map_location != "cpu" and _reads_on_cpu(Path(path)):
                raise RuntimeError(
                    f"{path}: cannot be loaded with map_location={map_location!r} ({type(err).__name__}: "
                    f"{err}); the checkpoint is intact (it loads onto the CPU)"
                ) from err
            raise CheckpointReadError(unreadable_message(Path(path), err)) from err


def _reads_on_cpu(path: Path) -> bool:
    try:
        torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:
        return False
    return True


def unreadable_message(path: Path, err: BaseException) -> str:
    """What a run says of a checkpoint it cannot read: the file, the cause, and the way out (start over,
    or resume one of the run's other readable checkpoints)."""
    earlier = []
    for other in sorted(path.parent.glob("*.ckpt")):
        try:
            step = torch.load(other, map_location="cpu", weights_only=False, mmap=True)["global_step"]
        except Exception:  # unreadable too (or the file itself): not a way out
            continue
        if other != path:
            earlier.append(f"ckpt_path={other} (step {step})")
    way_out = "delete it and rerun to start over from step 0"
    if earlier:
        way_out += ", or resume an earlier checkpoint: " + "; ".join(earlier)
    return f"{path}: cannot be read as a checkpoint ({type(err).__name__}: {err}); it is truncated or corrupt: {way_out}"


def read_checkpoint(path: str | Path, mmap: bool = True) -> dict:
    """A checkpoint's dict (memory-mapped by default, so a big one loads cheaply); a file that is not a
    readable checkpoint raises :class:`CheckpointReadError` naming it and the way out."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise CheckpointReadError(unreadable_message(path, err)) from err


def checkpoint_step(ckpt_path: str | Path | None) -> int:
    """``global_step`` of a Lightning checkpoint (0 for None)."""
    return 0 if ckpt_path is None else int(read_checkpoint(ckpt_path)["global_step"])


class LastCheckpoint(Checkpoint):
    """Rewrite ``<dirpath>/last.ckpt`` every ``every_n_steps`` steps and when SIGINT/SIGTERM stops the run.

    A ``Checkpoint`` subclass, so Lightning runs it after every other callback, ``ModelCheckpoint``
    included: the state it saves holds the best checkpoint of this step's dev check.
    """

    def __init__(
        self,
        dirpath: str | Path,
        every_n_steps: int | None = None,
        save_on_signal: bool = True,
        signal_check_every_n_steps: int = 10,
    ) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(
                f"callbacks.last_checkpoint.every_n_steps must be >= 1 or null, got {every_n_steps}"
            )
        if signal_check_every_n_steps < 1:
            raise ValueError(
                "callbacks.last_checkpoint.signal_check_every_n_steps must be >= 1, "
                f"got {signal_check_every_n_steps}"
            )
        self.signal_check_every_n_steps = signal_check_every_n_steps
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = every_n_steps
        self.save_on_signal = save_on_signal
        self._saved_step = -1
        self._due_after_dev_check = False
        self._sigint = False
        self._previous_sigint: Any = None

    def cadence(self, trainer: L.Trainer) -> int:
        """Steps between saves: ``every_n_steps``, else the dev-check interval in steps."""
        if self.every_n_steps is not None:
            return self.every_n_steps
        interval = trainer.val_check_batch
        if not isinstance(interval, int):
            raise ValueError(
                "callbacks.last_checkpoint.every_n_steps=null saves at every dev check, which needs "
                f"trainer.val_check_interval in steps (got val_check_batch={interval!r}); set every_n_steps"
            )
        return interval // max(1, trainer.accumulate_grad_batches)

    def save(self, trainer: L.Trainer, why: str) -> None:
        if self._saved_step == trainer.global_step:
            return
        trainer.save_checkpoint(self.path)
        self._saved_step = trainer.global_step
        log.info("saved %s at step %d (%s)", self.path, trainer.global_step, why)

    @staticmethod
    def _fitting(trainer: L.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking

    @staticmethod
    def _dev_check_due(trainer: L.Trainer) -> bool:
        # Lightning's own decision (private: no public equivalent as of Lightning 2.6)
        loop = trainer.fit_loop
        return bool(loop.epoch_loop._should_check_val_fx(loop._data_fetcher))

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._saved_step = trainer.global_step  # a resumed run starts from a saved state
        if self.save_on_signal and _main_thread():
            self._sigint = False
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self._sigint = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once
        log.warning(
            "Ctrl-C: saving last.ckpt at the end of this step, then stopping (Ctrl-C again: stop now)"
        )

    def _stop_if_interrupted(self, trainer: L.Trainer, dev_check: bool = False) -> None:
        interrupted = self._sigint
        if trainer.world_size > 1:  # every rank saves (a collective), so all must agree
            # a collective is a host sync: agree every signal_check_every_n_steps steps and at dev checks
            # (synced already), on the same steps on every rank (global_step is the same everywhere)
            if not dev_check and trainer.global_step % self.signal_check_every_n_steps:
                return
            interrupted = trainer.strategy.reduce_boolean_decision(interrupted, all=False)
        if interrupted:
            self.save(trainer, "Ctrl-C")
            raise TrainingInterrupted(signal.SIGINT, trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        due = trainer.global_step % self.cadence(trainer) == 0
        if self._dev_check_due(trainer):  # save after it, in on_validation_end
            self._due_after_dev_check = due
            return
        if due:
            self.save(trainer, f"every {self.cadence(trainer)} steps")
        self._stop_if_interrupted(trainer)

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not self._fitting(trainer):
            return
        if self._due_after_dev_check:
            self._due_after_dev_check = False
            self.save(trainer, "after the dev check")
        self._stop_if_interrupted(trainer, dev_check=True)

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and self.save_on_signal:
            # raised at a step boundary (after the step's dev check): the state is consistent
            self.save(trainer, "SIGTERM")
        self._restore_sigint()

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._restore_sigint()

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None and _main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def exit_on_signal(trainer: L.Trainer) -> Iterator[None]:
    """Around ``trainer.fit``: Lightning's ``SIGTERMException`` exits 0, which a scheduler would read as
    success; turn it into :class:`TrainingInterrupted` (exit status 143), logging where to resume."""
    try:
        yield
    except (SIGTERMException, TrainingInterrupted) as err:
        stop = (
            err
            if isinstance(err, TrainingInterrupted)
            else TrainingInterrupted(signal.SIGTERM, trainer.global_step)
        )
        log.warning(
            "%s stopped training after step %d: rerun the same command to resume from last.ckpt",
            signal.Signals(stop.signum).name,
            stop.step,
        )
        raise stop from None
