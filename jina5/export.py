"""Export stage-2 adapters.

    python -m jina5.export run=<stage-2 run dir> task=<task> [out=<dir>]
        -> a sentence-transformers directory: the adapter merged into the weights (W' = W + alpha/r B A),
           pooling + normalisation modules, the task's prefixes as named prompts ("query", "document").
           ``SentenceTransformer(out).encode(texts, prompt_name="query")`` equals
           ``encoder.encode(texts, task=task, prompt="query")`` (no custom code, no peft needed).
           Default out: <run>/export/<task>.

    python -m jina5.export runs=[<run dir>,...] out=<dir>
        -> one multi-adapter directory (base weights + adapters/<task>/ for every adapter of every run)
           that ``Encoder.from_pretrained(out)`` loads with all its adapters. The runs must share
           the same frozen backbone (the same stage-1 student); this is checked weight by weight.

``run`` / ``runs`` entries may be run dirs (holding ``encoder/``) or encoder dirs themselves.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf

from jina5.encoder import Encoder
from jina5.encoder_io import ADAPTERS_DIR

log = logging.getLogger(__name__)


def encoder_dir(run: str | Path) -> Path:
    """``<run>/encoder`` for a run dir, else ``run`` itself (an encoder dir)."""
    path = Path(run)
    return path / "encoder" if (path / "encoder").is_dir() else path


def load_run_encoder(run: str | Path) -> Encoder:
    """The encoder saved in a run dir (``<run>/encoder``) or in an encoder dir, with its adapters."""
    path = encoder_dir(run)
    if not path.is_dir():
        raise FileNotFoundError(f"{run}: neither a run dir with encoder/ nor an encoder dir")
    return Encoder.from_pretrained(path)


def export_sentence_transformers(encoder: Encoder, task: str | None, out: str | Path) -> Path:
    """Write ``encoder`` with adapter ``task`` merged as a sentence-transformers directory at ``out``.
    ``task=None`` takes the encoder's only adapter."""
    if task is None:
        if len(encoder.adapters) != 1:
            raise ValueError(f"task=? the encoder has adapters {encoder.adapters}; name one")
        task = encoder.adapters[0]
    merged = encoder.merged(task)
    path = merged.save_pretrained(out)
    log.info(
        "exported adapter %r merged, prompts %s -> %s (sentence-transformers)", task, merged.prompts, path
    )
    return path


def same_backbone(a: Encoder, b: Encoder) -> bool:
    """Whether the two encoders' base weights (adapters off) are identical."""
    sa, sb = a.base_model().state_dict(), b.base_model().state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def combine_adapters(runs: Sequence[str | Path], out: str | Path) -> Encoder:
    """One encoder holding every adapter of ``runs`` (same backbone), saved at ``out`` and returned."""
    if not runs:
        raise ValueError("runs=[...] is empty")
    combined = load_run_encoder(runs[0])
    for run in runs[1:]:
        other = load_run_encoder(run)
        if not same_backbone(combined, other):
            raise ValueError(
                f"{run}: its backbone differs from {runs[0]}'s; adapters of different stage-1 "
                "students cannot share one directory"
            )
        for task in other.adapters:
            if task in combined.adapters:
                raise ValueError(f"adapter {task!r} is in more than one run ({run})")
            combined.load_adapter(encoder_dir(run) / ADAPTERS_DIR / task, task)
            if task in other.task_prompts:
                combined.task_prompts[task] = other.task_prompts[task]
    combined.save_pretrained(out)
    log.info("combined adapters %s -> %s", combined.adapters, out)
    return combined


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = OmegaConf.from_dotlist(list(sys.argv[1:] if argv is None else argv))
    if cfg.get("runs") is not None:
        if not cfg.get("out"):
            raise SystemExit("runs=[...] needs out=<dir>")
        combine_adapters(list(cfg.runs), cfg.out)
    elif cfg.get("run"):
        encoder = load_run_encoder(cfg.run)
        task = cfg.get("task")
        name = task or (encoder.adapters[0] if len(encoder.adapters) == 1 else "model")
        out = cfg.get("out") or Path(cfg.run) / "export" / name
        export_sentence_transformers(encoder, task, out)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
