"""``data_manifest.json``: what each dataset of the training mix was read from and how, its rows, drops,
weight, sampling probability, batch size and lengths, and the history of the data each start of the run
trained on. Rank 0 writes it to the run directory at setup (``PairDataModule.setup``, ``manifest_dir``).

**Data identity.** A dataset's fingerprint is its rows and the sha1 of their content
(:func:`table_fingerprint`: what the manifest records as ``rows_rank0`` / ``rows_sha1_rank0``; an ``hf:``
source read in shares under DDP: rank 0's share). ``history`` lists the fingerprints of every start of
the run with the step it began at::

    "history": [{"began_at_step": 0, "datasets": {"bbc": {"rows": 64, "sha1": "..."}, ...}},
                {"began_at_step": 6, "datasets": {...}}]

A start also records ``inputs_sha1`` (:func:`inputs_digest`): the sha1 of the bytes of every local
source file of the mix and the installed versions of the bundled data packages. A finished run whose
config is unchanged (``jina5.runs.config``) and whose inputs hash the same read the same rows, so it is
skipped without loading the mix; where the digest differs, or cannot be taken (an ``hf:`` hub source),
the mix is loaded and its rows compared.

A fresh run writes a history of one start. A resumed run (:func:`record_manifest` with its resume step)
compares the data it reads now with the newest entry: changed data raises :class:`DataChangedError`
naming each changed dataset (old vs new rows and hash) and the ways out, unless the run accepts it
(``accept_changed_data=true``); then the start is appended, never written over. A finished run is checked
the same way before it is skipped (``jina5.runs.data_identity``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jina5.assets import installed_asset_versions
from jina5.atomic import atomic_write_text
from jina5.data.pairs import DatasetSpec, PairTable

log = logging.getLogger(__name__)

MANIFEST_FILE = "data_manifest.json"
ACCEPT_KEY = "accept_changed_data"  # the training config's key that accepts changed data (conf/train.yaml)
# PairTable.stats counts of rows dropped after the source's own (``filtered``): jina5.data.pairs
_DROP_COUNTS = ("held_out_dropped", "seen_dropped", "one_sentence", "no_same_label_text")


class DataChangedError(ValueError):
    """A run directory was trained on other data than its config reads now (the message names the
    datasets, their old and new rows and hashes, and the ways out)."""


def table_fingerprint(table: PairTable) -> dict[str, Any]:
    """``{"rows": N, "sha1": ...}`` of a table: the sha1 of ``json([queries, documents, negatives, scores,
    labels])``, so any changed, added, dropped or reordered row changes it."""
    content = [table.queries, table.documents, table.negatives, table.scores, table.labels]
    return {"rows": len(table), "sha1": hashlib.sha1(json.dumps(content).encode()).hexdigest()}


def local_source(source: str) -> Path | None:
    """The local file or folder a source names (``path``, or ``hf:<local folder>[:config]:split``);
    None for a hub id (no such local path)."""
    path = Path(source.removeprefix("hf:").split(":", 1)[0] if source.startswith("hf:") else source)
    return path if path.exists() else None


def inputs_digest(specs: Sequence[DatasetSpec]) -> str | None:
    """sha1 of what the mix's rows are read from: the bytes of every local source file (a folder: each
    file under it, by relative path) and the installed version of every bundled data package; None when
    a spec reads a hub dataset, whose content is not a local file."""
    sha = hashlib.sha1(json.dumps(installed_asset_versions()).encode())
    for spec in specs:
        if not spec.source:
            continue
        path = local_source(spec.source)
        if path is None:
            return None
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            sha.update(f"{spec.name}:{file.relative_to(path) if path.is_dir() else file.name}\n".encode())
            with file.open("rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    sha.update(block)
    return sha.hexdigest()


def mix_manifest(
    tables: Sequence[PairTable],
    rows_all_ranks: Sequence[int],
    weights: Sequence[float],
    rank: int,
    world: int,
    seed: int,
    split_seed: int,
    sample_seed: int,
) -> dict[str, Any]:
    """The mix as set up (``data_manifest.json``): per dataset its source and how it was read, its rows
    over all ranks (and this rank's), weight, sampling probability, batch size, max lengths, the rows
    dropped on the way (by reason), the hub id of an ``hf:`` source read from the hub, the rows'
    languages (``jina5.data.languages``) and fingerprints (the Arrow split's, the rows' own sha1); ``weights``
    are the sampling weights (``PairDataModule.sampling_weights``), ``rank`` this process's, ``sample_seed``
    the seed of the rows' draws."""
    entries = []
    for table, rows, weight in zip(tables, rows_all_ranks, weights, strict=True):
        spec, stats = table.spec, table.stats
        bundled = f"bundled:{spec.corpus or spec.name}"
        dropped = {**stats.get("filtered", {}), **{k: stats[k] for k in _DROP_COUNTS if stats.get(k)}}
        fingerprint = table_fingerprint(table)
        entries.append(
            {
                "name": spec.name,
                "source": spec.source or bundled,
                "access": stats.get("access") or ("file" if spec.source else "bundled"),
                "rank_local": table.rank_local,
                "rows": rows,
                f"rows_rank{rank}": fingerprint["rows"],
                "rows_read": stats.get("read_rows", stats.get("raw_rows")),
                "max_rows": spec.max_rows,
                "weight": spec.weight,
                "sampling_weight": weight,
                "sampling_probability": weight / sum(weights),
                "batch_size": spec.batch_size,
                "query_max_length": spec.query_max_length,
                "document_max_length": spec.document_max_length,
                "texts_only": spec.texts_only,
                "allow_small": spec.allow_small,
                "repeats_rows": rows < spec.batch_size * world,
                "dropped": dropped,
                "hub_id": stats.get("hub_id"),
                "languages": stats.get("languages", []),
                "fingerprint": stats.get("fingerprint"),
                "version": stats.get("version"),
                f"rows_sha1_rank{rank}": fingerprint["sha1"],
            }
        )
    return {
        "world_size": world,
        "seed": seed,
        "sample_seed": sample_seed,
        "split_seed": split_seed,
        "datasets": entries,
    }


def manifest_fingerprint(manifest: Mapping) -> dict[str, dict[str, Any]]:
    """{dataset: {"rows", "sha1"}} of a manifest rank 0 wrote (its ``rows_rank0`` / ``rows_sha1_rank0``)."""
    return {d["name"]: {"rows": d["rows_rank0"], "sha1": d["rows_sha1_rank0"]} for d in manifest["datasets"]}


def newest_start(stored: Mapping) -> dict[str, Any]:
    """The newest entry of a stored manifest's ``history`` (one written before histories existed: its
    datasets, from step 0)."""
    history = stored.get("history")
    return history[-1] if history else {"began_at_step": 0, "datasets": manifest_fingerprint(stored)}


def data_changes(old: Mapping[str, Mapping], new: Mapping[str, Mapping]) -> list[str]:
    """``"bbc: rows 64 -> 63, sha1 0a1b2c3d4e5f -> 6a7b8c9d0e1f"`` for each dataset whose rows or content
    differ, or that is on one side only, in the order of ``old`` then ``new``."""
    changes = []
    for name in dict.fromkeys([*old, *new]):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if a is None or b is None:
            changes.append(
                f"{name}: {'absent' if a is None else 'trained on'} -> {'absent' if b is None else 'new'}"
            )
        else:
            changes.append(
                f"{name}: rows {a['rows']} -> {b['rows']}, sha1 {a['sha1'][:12]} -> {b['sha1'][:12]}"
            )
    return changes


def changed_data_error(
    path: Path, start: Mapping, changes: Sequence[str], finished: bool
) -> DataChangedError:
    """The refusal of a run whose data changed: the datasets with their old and new rows and hashes, and
    the ways out (its own run_name, or ``accept_changed_data=true``)."""
    run_dir, shown = path.parent, "\n  ".join(changes)
    if finished:
        what, harm, accepted = "is a finished run", "skipping it would report that model", "keep it as it is"
    else:
        what = "holds an interrupted run"
        harm = "resuming would continue its steps"
        accepted = f"resume on the new data ({MANIFEST_FILE} then records both, with the step each began at)"
    return DataChangedError(
        f"{run_dir} {what} trained on other data than this config reads now ({path}, the data of step "
        f"{start['began_at_step']} on; same config, changed contents):\n  {shown}\n{harm.capitalize()} for "
        "the new data. Train on the new data in its own directory, e.g. "
        "run_name='${experiment_name}-newdata-seed${seed}'; or accept the change and "
        f"{accepted}: {ACCEPT_KEY}=true."
    )


def record_manifest(
    path: Path, manifest: dict, resume_step: int | None, accept_changed: bool, inputs: str | None = None
) -> None:
    """Write ``manifest`` to ``path`` with its ``history`` (module docstring): a fresh run
    (``resume_step`` None) starts a history of one start; a resumed run checks its data against the
    newest start in ``path`` (raises :class:`DataChangedError` when it changed, unless ``accept_changed``)
    and appends a start at ``resume_step``. ``inputs``: the start's :func:`inputs_digest`."""
    current = manifest_fingerprint(manifest)
    history: list[dict] = []
    if resume_step is not None and path.exists():
        stored = json.loads(path.read_text())
        start = newest_start(stored)
        history = stored.get("history") or [start]
        changes = data_changes(start["datasets"], current)
        if changes and not accept_changed:
            raise changed_data_error(path, start, changes, finished=False)
        if changes:
            log.warning(
                "%s=true: resuming at step %d on changed data (recorded in %s): %s",
                ACCEPT_KEY,
                resume_step,
                path,
                "; ".join(changes),
            )
    elif resume_step is not None:
        log.warning(
            "%s: resuming at step %d without a %s of the steps before: their data cannot be checked",
            path.parent,
            resume_step,
            MANIFEST_FILE,
        )
    start = {"began_at_step": resume_step or 0, "datasets": current}
    if inputs is not None:
        start["inputs_sha1"] = inputs
    atomic_write_text(
        path, json.dumps({**manifest, "history": [*history, start]}, indent=1, sort_keys=True) + "\n"
    )
