"""Texts cut to a character budget before tokenizing: the tokens truncation keeps never change (checked
against tokenizing the whole text, on WordPiece, byte-level BPE and Metaspace tokenizers), and a 10 MB
text costs what a short one does."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from jina5.assets import resolve_model
from jina5.model.text_budget import bounded_texts, chars_per_token, report_long_texts, word_cut
from jina5.model.tiny import char_tokenizer

ROOT = Path(__file__).resolve().parents[3]
CORPUS = [
    "the quick brown fox jumps over the lazy dog, again and again.",
    "embedding models map texts to vectors; cosine similarity compares them!",
    "Zürich, São Paulo and Kraków: naïve café owners don't mind 12345 numbers.",
    "tokenizers split words into pieces: un-believ-able, re-tok-en-ization.",
]
WORDS = " ".join(CORPUS).split() + ["é", "日本語", "x" * 30, "\x00", "...", "'s"]


def _trained(model, pre_tokenizer, trainer, decoder) -> PreTrainedTokenizerFast:
    tok = Tokenizer(model)
    tok.pre_tokenizer, tok.decoder = pre_tokenizer, decoder
    tok.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def byte_level_bpe() -> PreTrainedTokenizerFast:
    """A GPT-2 / Qwen-style tokenizer: byte-level pre-tokenizer (regex split), BPE."""
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["[PAD]", "[UNK]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    return _trained(
        models.BPE(), pre_tokenizers.ByteLevel(add_prefix_space=False), trainer, decoders.ByteLevel()
    )


def metaspace_unigram() -> PreTrainedTokenizerFast:
    """A SentencePiece-style tokenizer: Metaspace (splits at spaces only), Unigram."""
    trainer = trainers.UnigramTrainer(vocab_size=120, special_tokens=["[PAD]", "[UNK]"], unk_token="[UNK]")
    return _trained(models.Unigram(), pre_tokenizers.Metaspace(), trainer, decoders.Metaspace())


TOKENIZERS = {
    "char": lambda: char_tokenizer(),
    "wordpiece (MiniLM)": lambda: AutoTokenizer.from_pretrained(
        resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    ),
    "byte-level BPE": byte_level_bpe,
    "metaspace unigram": metaspace_unigram,
}


def random_text(rng: random.Random, budget: int) -> str:
    """Words, runs of spaces, newlines and tabs, in random lengths; every run without a space is shorter
    than ``budget`` (the exact case of the module docstring)."""
    parts = []
    for _ in range(rng.choice([1, 5, 40, 200])):
        parts.append(rng.choice(WORDS)[: budget - 1])
        parts.append(rng.choice([" ", " ", " ", "  ", "\n", " \n ", "\t ", " " * rng.randint(1, 3 * budget)]))
    return "".join(parts)


def whole(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_cut_texts_keep_the_tokens_of_the_whole_texts(name):
    """400 random texts (spaces, newlines, tabs, long blank runs, non-ASCII, unknown characters) at two
    max lengths: the ids of the cut texts are the ids of the whole texts, and some texts were cut."""
    tokenizer = TOKENIZERS[name]()
    rng = random.Random(0)
    for max_length in (8, 32):
        budget = max_length * chars_per_token(tokenizer)
        texts = [random_text(rng, budget) for _ in range(200)]
        cut = bounded_texts(tokenizer, texts, max_length, budget)
        assert sum(c != t for c, t in zip(cut, texts, strict=True)) > 20  # the test exercises the cut
        assert all(len(c) <= len(t) for c, t in zip(cut, texts, strict=True))
        assert whole(tokenizer, cut, max_length) == whole(tokenizer, texts, max_length)


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_a_text_whose_tokens_fit_max_length_is_never_shortened(name):
    """Far longer than the budget but few tokens (blank runs, characters the tokenizer drops, one long
    unknown word): the whole text goes to the tokenizer, not a head of it."""
    tokenizer = TOKENIZERS[name]()
    max_length = 16
    budget = max_length * chars_per_token(tokenizer)
    fits = [
        "a" + " " * (20 * budget) + "b",
        "first words" + " \n\t " * (5 * budget) + "last words",
        " " * (10 * budget) + "late start",
    ]
    fits = [t for t in fits if len(whole(tokenizer, [t], 10**6)[0]) <= max_length]
    # byte-level BPE and Metaspace turn every character (spaces too) into tokens of at most
    # chars_per_token characters: no text over the budget fits, the vocabulary bound alone proves it;
    # WordPiece and the char tokenizer drop spaces, so only the growth of the head keeps these whole
    assert fits or name in ("byte-level BPE", "metaspace unigram")
    assert bounded_texts(tokenizer, fits, max_length, budget) == fits


def test_word_cut_ends_before_a_space_inside_the_limit():
    assert word_cut("alpha beta gamma", 8) == "alpha"  # inside "beta": back to the space before it
    assert word_cut("alpha beta gamma", 10) == "alpha beta"  # the limit is a space: the cut is there
    assert word_cut("alpha    beta", 7) == "alpha"  # trailing spaces dropped
    assert word_cut("alpha\n beta", 9) == "alpha\n"  # only spaces: a newline stays (Metaspace keeps it)
    assert word_cut("alphabetagamma", 5) == "alpha"  # no space: inside the run


CHILD = textwrap.dedent(
    """
    import json, os, threading, time
    from jina5.data.collate import PairCollator
    from jina5.data.pairs import DatasetSpec, PairTable
    from jina5.model.encoder import Encoder
    from jina5.model.tiny import tiny_model_and_tokenizer
    from jina5.teacher.cache import Teacher

    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    model, tok = tiny_model_and_tokenizer("bert", layers=1)
    student = Encoder(model, tokenizer=tok, prompts={"query": "q: ", "document": "d: "})
    model, tok = tiny_model_and_tokenizer("mpnet", layers=1)
    teacher = Teacher(encoder=Encoder(model, tokenizer=tok, max_length=128))
    big = ("lorem ipsum dolor sit amet, " * 400_000)[:10_000_000]
    table = PairTable(DatasetSpec("toy", batch_size=2), ["a query", "another"], [big, "a doc"])
    base = peak = rss_mb()

    def watch():  # guards the machine, not the verdict: the limit is above the test's bound
        global peak
        while True:
            peak = max(peak, rss_mb())
            if peak - base > KILL_MB:
                os._exit(3)
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True).start()
    out = {}
    for name, step in [
        ("collate", lambda: PairCollator(student, [table])([(0, 0), (0, 1)])),
        ("encode", lambda: student.encode([big, "short"], prompt="document")),
        ("teacher", lambda: teacher.embed([big, "short"])),
    ]:
        start, base, peak = time.perf_counter(), rss_mb(), rss_mb()
        step()
        out[name] = {"seconds": time.perf_counter() - start, "rss_mb": peak - base}
    print(json.dumps(out))
    """
)


@pytest.mark.slow  # run alone it passes in ~7 s; late in a full pytest process the parent died of SIGSEGV (unexplained)
def test_a_10mb_text_collates_encodes_and_embeds_in_bounded_time_and_memory():
    """One 10 MB text in a training batch, an evaluation encode and a teacher fill: each under 10 s
    (contended CPU) and 400 MB of RSS growth (sampled every 5 ms; what remains is linear in the text:
    the string, its copies, the normalised text its duplicate id and teacher key are hashed from)."""
    script = CHILD.replace("KILL_MB", "600")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the child imports this checkout
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, f"rc {proc.returncode} (3: RSS grew over 600 MB)\n{proc.stderr[-2000:]}"
    steps = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, got in steps.items():
        assert got["seconds"] < 10, (name, got)
        assert got["rss_mb"] < 400, (name, got)


def test_long_texts_are_reported_with_their_count_and_the_longest(caplog):
    with caplog.at_level(logging.WARNING, logger="jina5.model.text_budget"):
        assert report_long_texts("dataset 'toy' documents (student)", ["a" * 50, "b", "c" * 80], 40, 8) == 2
        assert report_long_texts("dataset 'ok' documents (student)", ["short"], 40, 8) == 0
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert message.startswith("dataset 'toy' documents (student): 2 of 3 texts are longer than 40 characters")
    assert "(the longest: 80 characters)" in message and "max_length 8 tokens" in message
