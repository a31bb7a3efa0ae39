"""The collator: a batch of (dataset, row) keys of one dataset -> the module's inputs.

Texts are tokenised with the student's prefixes (query / document prompts) and each dataset's own max
lengths; the rows' teacher vectors, scores and text ids (for duplicate masking) come along.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from jina5.data.pairs import PairTable
from jina5.data.schema import normalise_text
from jina5.model.encoder import Encoder


def text_id(text: str) -> int:
    """Signed 63-bit hash of the normalised text (duplicate masking in InfoNCE)."""
    return (
        int.from_bytes(hashlib.blake2b(normalise_text(text).encode(), digest_size=8).digest(), "little") >> 1
    )


class PairCollator:
    """[(dataset, row)] of one dataset -> tokenised query/document/negatives + teacher vectors.

    Output (B rows, K negatives, Dt teacher dim): ``query`` / ``document`` {input_ids, attention_mask}
    (B, L); ``negatives`` the same for (B*K) texts or None; ``teacher_query`` / ``teacher_document``
    (B, Dt) or None; ``scores`` (B,) or None; ``query_ids`` / ``document_ids`` (B,) int64;
    ``dataset``: the dataset name.

    A texts-only table gives a texts-only batch: its B texts as ``document`` (document prompt and max
    length), ``teacher_document``, ``document_ids``; ``query``, ``query_ids``, ``teacher_query``,
    ``negatives`` and ``scores`` are None.
    """

    def __init__(self, encoder: Encoder, tables: Sequence[PairTable]) -> None:
        self.encoder, self.tables = encoder, tables

    def __call__(self, keys: list[tuple[int, int]]) -> dict:
        table = self.tables[keys[0][0]]
        rows = [r for _, r in keys]
        if table.texts_only:
            return self.texts_only_batch(table, rows)
        spec = table.spec
        queries = [table.queries[r] for r in rows]
        documents = [table.documents[r] for r in rows]
        out = {
            "dataset": spec.name,
            "query": self.tokens(queries, "query", spec.query_max_length),
            "document": self.tokens(documents, "document", spec.document_max_length),
            "negatives": None,
            "teacher_query": None,
            "teacher_document": None,
            "scores": None,
            "query_ids": torch.tensor([text_id(q) for q in queries]),
            "document_ids": torch.tensor([text_id(d) for d in documents]),
        }
        negs = [table.negatives[r] for r in rows] if table.negatives else []
        if negs and all(negs):
            k = min(len(n) for n in negs)
            flat = [n for row in negs for n in row[:k]]
            out["negatives"] = self.tokens(flat, "document", spec.document_max_length)
            out["negatives_per_query"] = k
        if table.teacher_query is not None:
            out["teacher_query"] = torch.from_numpy(table.teacher_query[rows])
            out["teacher_document"] = torch.from_numpy(table.teacher_document[rows])
        if table.scores and all(s is not None for s in (table.scores[r] for r in rows)):
            out["scores"] = torch.tensor([table.scores[r] for r in rows], dtype=torch.float32)
        return out

    def tokens(self, texts: list[str], prompt: str, max_length: int) -> dict:
        """The encoder's tokenised batch; for an encoder that packs, with ``lengths`` (each row's real
        tokens, host ints), so packing plans its rows without reading the mask back from the device."""
        out = self.encoder.tokenize(texts, prompt, max_length=max_length)
        if getattr(self.encoder, "packing", False):
            out["lengths"] = out["attention_mask"].sum(1).tolist()
        return out

    def texts_only_batch(self, table: PairTable, rows: list[int]) -> dict:
        spec, texts = table.spec, [table.documents[r] for r in rows]
        return {
            "dataset": spec.name,
            "query": None,
            "document": self.tokens(texts, "document", spec.document_max_length),
            "negatives": None,
            "teacher_query": None,
            "teacher_document": (
                None if table.teacher_document is None else torch.from_numpy(table.teacher_document[rows])
            ),
            "scores": None,
            "query_ids": None,
            "document_ids": torch.tensor([text_id(t) for t in texts]),
        }
