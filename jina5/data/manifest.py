"""``data_manifest.json``: what each dataset of the training mix was read from and how, its rows, drops,
weight, sampling probability, batch size and lengths. Rank 0 writes it to the run directory at setup
(``PairDataModule.setup``, ``manifest_dir``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from jina5.data.pairs import PairTable

MANIFEST_FILE = "data_manifest.json"
# PairTable.stats counts of rows dropped after the source's own (``filtered``): jina5.data.pairs
_DROP_COUNTS = ("held_out_dropped", "seen_dropped", "one_sentence", "no_same_label_text")


def mix_manifest(
    tables: Sequence[PairTable],
    rows_all_ranks: Sequence[int],
    weights: Sequence[float],
    rank: int,
    world: int,
    seed: int,
    split_seed: int,
) -> dict[str, Any]:
    """The mix as set up (``data_manifest.json``): per dataset its source and how it was read, its rows
    over all ranks (and this rank's), weight, sampling probability, batch size, max lengths, the rows
    dropped on the way (by reason), the hub id of an ``hf:`` source read from the hub, the rows'
    languages (``jina5.data.languages``) and fingerprints (the Arrow split's, the rows' own sha1); ``weights``
    are the sampling weights (``PairDataModule.sampling_weights``), ``rank`` this process's."""
    entries = []
    for table, rows, weight in zip(tables, rows_all_ranks, weights, strict=True):
        spec, stats = table.spec, table.stats
        bundled = f"bundled:{spec.corpus or spec.name}"
        dropped = {**stats.get("filtered", {}), **{k: stats[k] for k in _DROP_COUNTS if stats.get(k)}}
        content = [table.queries, table.documents, table.negatives, table.scores, table.labels]
        entries.append(
            {
                "name": spec.name,
                "source": spec.source or bundled,
                "access": stats.get("access") or ("file" if spec.source else "bundled"),
                "rank_local": table.rank_local,
                "rows": rows,
                f"rows_rank{rank}": len(table),
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
                f"rows_sha1_rank{rank}": hashlib.sha1(json.dumps(content).encode()).hexdigest(),
            }
        )
    return {"world_size": world, "seed": seed, "split_seed": split_seed, "datasets": entries}
