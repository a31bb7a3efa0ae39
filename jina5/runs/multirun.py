"""Which Hydra launcher can run a multirun (``-m``) of multi-rank trainings.

Lightning starts the ranks of ``strategy: ddp`` / ``fsdp`` / ``deepspeed`` (and of ``auto`` on several
devices) by re-running the process's command line once per extra rank. Under a multirun that command
line is the whole sweep (or, under joblib and submitit's local executor, a worker's), so each rank
would relaunch every job of it. Two ways work: a launcher that starts the ranks itself, one process per
device (``hydra/launcher=slurm``: SLURM starts ``tasks_per_node`` = ``trainer.devices`` tasks on each of
``trainer.num_nodes`` nodes and Lightning only joins them), or a strategy that forks or spawns its
ranks from inside the job (``ddp_spawn``, ``ddp_fork``). :func:`check_multirun` refuses the rest before
anything is loaded, naming both ways out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
IN_JOB_START = ("spawn", "fork", "notebook")  # strategy names / start methods that start ranks in-process


def world_size(trainer: Mapping[str, Any]) -> int:
    """Ranks a trainer config asks for: devices per node (an int, a list or "0,1" of device ids, or
    ``auto`` / -1: every visible GPU, one CPU process) x ``num_nodes``."""
    devices = trainer.get("devices", "auto")
    accelerator = str(trainer.get("accelerator", "auto"))
    if isinstance(devices, str) and "," in devices:
        per_node = len([d for d in devices.split(",") if d.strip()])
    elif devices in ("auto", -1, "-1"):
        per_node = max(1, torch.cuda.device_count()) if accelerator in ("gpu", "cuda", "auto") else 1
    elif isinstance(devices, str | int):
        per_node = int(devices)
    else:  # a list of device ids
        per_node = len(devices)
    return per_node * int(trainer.get("num_nodes", 1) or 1)


def relaunches_command_line(trainer: Mapping[str, Any]) -> bool:
    """Whether Lightning would start the ranks of ``trainer.strategy`` (were there several) by re-running
    the command line."""
    strategy = trainer.get("strategy", "auto")
    if isinstance(strategy, Mapping):  # an instantiated strategy: DDPStrategy(start_method=...), FSDP, ...
        return str(strategy.get("start_method", "popen")) not in ("spawn", "fork", "forkserver")
    name = str(strategy)
    if any(word in name for word in IN_JOB_START):
        return False
    return name == "auto" or name.startswith(("ddp", "fsdp", "deepspeed"))


def check_multirun(trainer: Mapping[str, Any], multirun: bool, launcher_target: str | None) -> None:
    """Raise if a multirun under ``launcher_target`` would relaunch its sweep in every rank (module
    docstring); a single run, one rank, or the SLURM launcher (ranks started by SLURM) passes."""
    if not multirun or launcher_target == SLURM_LAUNCHER:
        return
    ranks = world_size(trainer)
    if ranks <= 1 or not relaunches_command_line(trainer):
        return
    strategy = trainer.get("strategy", "auto")
    name = strategy.get("_target_") if isinstance(strategy, Mapping) else strategy
    raise ValueError(
        f"-m (multirun) with trainer.strategy={name} on {ranks} ranks (trainer.devices="
        f"{trainer.get('devices')}, trainer.num_nodes={trainer.get('num_nodes', 1)}) under "
        f"{launcher_target}: Lightning starts the other ranks by re-running this command line, which "
        "would relaunch the whole sweep in each of them. Launch the sweep with hydra/launcher=slurm "
        "(submitit: one SLURM task per device), or train each config without -m, or start the ranks "
        "inside each job with trainer.strategy=ddp_spawn"
    )
