"""Texts cut to a character budget before they reach a tokenizer.

A fast tokenizer's time and memory grow with a text's characters, not with the ``max_length`` tokens
truncation keeps: a 10 MB text costs seconds and gigabytes to tokenize, for all but its first few
hundred tokens to be thrown away. Every tokenization here goes through :func:`bounded_texts` first
(``Encoder.tokenize_ids``: training batches, the teacher fill, mining, evaluation), which hands the
tokenizer at most a budget of characters of each text::

    budget(max_length) = max_length x chars_per_token
    chars_per_token    = the longest entry of the tokenizer's vocabulary, in characters

A text within the budget reaches the tokenizer whole, as before. Where every character of a text
becomes part of some token (byte-level BPE, Metaspace), the budget alone proves that no longer text fits
``max_length`` tokens; WordPiece drops spaces and control characters and maps a word of 100+ characters
to one unknown token, so a longer text may still fit, which the growth below takes care of.

A text longer than the budget is replaced by its *head*: its first ``budget`` characters, cut back to
just before the last space inside them (trailing spaces dropped). Tokenizers that split a text at
spaces before anything else (WordPiece, byte-level BPE, SentencePiece's Metaspace: every tokenizer
here) turn a head that ends before a space into a prefix of the whole text's tokens. So:

- if the head alone holds more than ``max_length`` tokens, truncating it keeps exactly the tokens
  truncating the whole text keeps;
- else (the text is mostly spaces, characters the tokenizer drops, or long words it maps to one
  unknown token) the head is grown 4x and tried again, up to the whole text. A text whose tokens fit
  ``max_length`` is therefore never shortened: it ends up tokenized whole.

The one inexact case: a head with no space at all (a run of more than ``budget`` characters without
one: base64, unspaced CJK) is cut inside that run, and the last tokens before the cut may be segmented
differently from the whole run's. Cost: a long text is tokenized from at most a few heads (each round
one batch), the growth stopping at the first head that holds more than ``max_length`` tokens, so a
tokenizer never makes more than about ``4 x budget`` characters' worth of tokens of it; a cut text's
head is tokenized twice (the check, then the batch), about the cost of the whole text at twice the
budget, and far less beyond.

:func:`report_long_texts` is the warning, per dataset (training: ``jina5.data.datamodule``; evaluation:
``jina5.eval.suite``), of how many of its texts are over the budget and how long the longest is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

log = logging.getLogger(__name__)

GROWTH = 4  # a head that holds fewer than max_length tokens is grown by this factor


def chars_per_token(tokenizer: Any) -> int:
    """The longest vocabulary entry of ``tokenizer`` in characters (at least 1): a bound on the
    characters one token stands for (``##ing``, ``Ġthe``, ``▁the`` count their marker too)."""
    return max((len(token) for token in tokenizer.get_vocab()), default=1) or 1


def word_cut(text: str, limit: int) -> str:
    """``text[:limit]`` cut back to just before the last space at or before position ``limit``, trailing
    spaces dropped; ``text[:limit]`` itself when it holds no space (a cut inside a run)."""
    at = text.rfind(" ", 0, limit + 1)
    return text[:limit] if at <= 0 else text[:at].rstrip(" ")


def bounded_texts(tokenizer: Any, texts: Sequence[str], max_length: int, budget: int) -> list[str]:
    """``texts`` with each one longer than ``budget`` characters replaced by its head: the first
    :func:`word_cut` of it, from ``budget`` characters growing by :data:`GROWTH`, that holds more than
    ``max_length`` tokens (special tokens included), else the whole text. Truncated to ``max_length``
    tokens, every text tokenizes as before (module docstring). The heads of one round are tokenized in
    one batch (the tokenizer's own parallelism)."""
    out = list(texts)
    todo = [i for i, text in enumerate(texts) if len(text) > budget]
    limit = budget
    while todo:
        heads = [word_cut(texts[i], limit) for i in todo]
        ids = tokenizer(heads, truncation=True, max_length=max_length + 1, add_special_tokens=True)[
            "input_ids"
        ]
        grow = []
        for i, cut, x in zip(todo, heads, ids, strict=True):
            if len(x) > max_length:
                out[i] = cut
            elif limit * GROWTH < len(texts[i]):
                grow.append(i)
        todo, limit = grow, limit * GROWTH
    return out


def report_long_texts(label: str, texts: Iterable[str], budget: int, max_length: int) -> int:
    """Warn how many of ``texts`` (``label`` names the dataset and side) are longer than ``budget``
    characters, the budget of ``max_length`` tokens, and how long the longest is; returns the count."""
    count, total, longest = 0, 0, 0
    for text in texts:
        total += 1
        if len(text) > budget:
            count += 1
            longest = max(longest, len(text))
    if count:
        log.warning(
            "%s: %d of %d texts are longer than %d characters (the longest: %d characters), the budget of "
            "max_length %d tokens: each is tokenized from its first %d characters, cut at a space (more "
            "where those hold fewer than %d tokens), which keeps the tokens truncation keeps "
            "(jina5.model.text_budget)",
            label,
            count,
            total,
            budget,
            longest,
            max_length,
            budget,
            max_length,
        )
    return count
