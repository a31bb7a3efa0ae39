"""Evaluation tasks built from the held-out splits of the bundled corpora (config: ``conf/eval/*.yaml``).

One config block per task type lists its data sets; an entry's keys override the type's defaults::

    retrieval:
      k_values: [10, 100]
      datasets:
        - {corpus: news}
        - {corpus: chatterbot, group_by: language}    # one task per language

``build_tasks(eval_cfg)`` turns every entry into :class:`EvalTask` objects (the evaluator inputs,
ready to run) and :class:`SkippedTask` notes (an entry or language that cannot be scored, with the
reason, which is logged and reported in the task list). Inputs always come from the ``split``
(default ``test``) of ``split_corpus(load_corpus(corpus), corpus, split_seed, fractions)``, the same
deterministic, deduplicated split training uses; classification probes train on the ``train`` split.

Per task type (columns are schema columns, configurable):

- **retrieval** (``query_column`` -> ``document_column``): queries and documents are deduplicated on
  ``normalise_text``; query q_a (one per distinct query text) and document d_b (one per distinct
  document text) are relevant, ``qrels[a][b] = 1``, iff some row pairs them. The corpus is every
  distinct document of the split. ``max_queries`` keeps a seeded subset of queries (not documents).
- **sts** (``text_a_column``, ``text_b_column``, ``score_column``): the pairs and their scores;
  ``max_pairs`` keeps a seeded subset.
- **classification** (``text_column``, ``label_column``): train texts/labels from ``train_split``,
  test texts/labels from ``split``; ``max_test`` keeps a seeded subset of the test rows.
- **clustering** (``text_column``, ``label_column``): texts and labels of the split; ``max_docs``
  keeps a seeded subset.

Every cap draws with ``numpy.random.default_rng(sample_seed)`` (sorted indices), so the inputs are a
pure function of the config and the corpus. ``group_by`` (a column, e.g. ``language``) makes one task
per value; groups with fewer than ``min_rows`` rows are skipped. A task's :attr:`EvalTask.key`
hashes its name, settings and inputs: the results store caches baselines under it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np

from jina5.assets import cache_root
from jina5.data.corpora import load_corpus
from jina5.data.schema import dataset_stats, normalise_text
from jina5.data.splits import DEFAULT_FRACTIONS, split_corpus
from jina5.eval.classification import evaluate_classification
from jina5.eval.clustering import evaluate_clustering
from jina5.eval.metrics import Encode
from jina5.eval.retrieval import evaluate_retrieval
from jina5.eval.sts import evaluate_sts

log = logging.getLogger(__name__)

TASK_TYPES: tuple[str, ...] = ("retrieval", "sts", "classification", "clustering")
# Bump when the way inputs or records are built changes: it invalidates cached baseline results.
SUITE_VERSION = 1

# Defaults of every entry key per task type (a config value overrides; unknown keys raise).
COMMON_DEFAULTS: dict[str, Any] = {
    "corpus": None,  # bundled corpus name (jina5.data.sources.CORPORA)
    "name": None,  # display name; default: the corpus name
    "split": None,  # None -> the eval config's top-level ``split``
    "fractions": None,  # None -> the split's default fractions (0.8, 0.1, 0.1)
    "group_by": None,  # a column: one task per distinct value (e.g. language)
    "min_rows": 2,  # a task (or group) with fewer rows is skipped, with the reason logged
    "sample_seed": 0,  # seed of every cap's draw
}
TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "retrieval": {
        "query_column": "query",
        "document_column": "document",
        "k_values": [10, 100],
        "metrics": ["ndcg@10", "mrr@10", "recall@100"],  # None keeps every metric at every k
        "rescore": None,  # re-rank this many binary/int8 candidates with float vectors
        "max_queries": None,
    },
    "sts": {
        "text_a_column": "query",
        "text_b_column": "document",
        "score_column": "score",
        "max_pairs": None,
    },
    "classification": {
        "text_column": "document",
        "label_column": "label",
        "train_split": "train",
        "n_per_class": 8,
        "seeds": [0, 1, 2],
        "max_iter": 100,
        "max_test": None,
    },
    "clustering": {
        "text_column": "document",
        "label_column": "label",
        "seeds": [0, 1, 2],
        "max_docs": None,
        "batch_size": 500,
    },
}


@dataclass
class EvalTask:
    """One scorable task: evaluator ``inputs`` (texts, labels, qrels, ...) and ``settings``.

    Records from :meth:`run` carry task, dataset (the corpus), language (the group value, else the
    split's single language, else None), split, metric, dim, precision, value.
    """

    type: str
    dataset: str
    language: str | None
    split: str
    name: str
    inputs: dict[str, Any]
    settings: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)  # counts for the progress line
    _key: str | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        """sha256 of (suite version, name, type, split, settings, inputs): the cache key of its results."""
        if self._key is None:
            h = hashlib.sha256()
            head = [
                SUITE_VERSION,
                self.name,
                self.type,
                self.dataset,
                self.language,
                self.split,
                self.settings,
            ]
            h.update(json.dumps(head, sort_keys=True, default=str).encode())
            h.update(json.dumps(self.inputs, sort_keys=True, default=str).encode())
            self._key = h.hexdigest()
        return self._key

    def held_out_texts(self) -> list[str]:
        """Every text the task scores on (not the classification probe's training texts)."""
        i = self.inputs
        if self.type == "retrieval":
            return list(i["queries"]) + list(i["corpus"])
        if self.type == "sts":
            return list(i["texts_a"]) + list(i["texts_b"])
        if self.type == "classification":
            return list(i["test_texts"])
        return list(i["texts"])

    def run(self, encode: Encode, dims: Sequence[int] | None, precisions: Sequence[str]) -> list[dict]:
        """Score the task with ``encode`` for every (dim, precision); returns metric records."""
        s, i = self.settings, self.inputs
        if self.type == "retrieval":
            qrels = {int(q): {int(d): g for d, g in rel.items()} for q, rel in i["qrels"].items()}
            recs = evaluate_retrieval(
                encode,
                i["queries"],
                i["corpus"],
                qrels,
                dims,
                precisions,
                k_values=s["k_values"],
                rescore=s["rescore"],
            )
            if s["metrics"] is not None:
                recs = [r for r in recs if r["metric"] in s["metrics"]]
        elif self.type == "sts":
            recs = evaluate_sts(encode, i["texts_a"], i["texts_b"], i["scores"], dims, precisions)
        elif self.type == "classification":
            recs = evaluate_classification(
                encode,
                i["train_texts"],
                i["train_labels"],
                i["test_texts"],
                i["test_labels"],
                dims,
                precisions,
                n_per_class=s["n_per_class"],
                seeds=s["seeds"],
                max_iter=s["max_iter"],
            )
        else:
            recs = evaluate_clustering(
                encode,
                i["texts"],
                i["labels"],
                dims,
                precisions,
                seeds=s["seeds"],
                max_docs=None,
                batch_size=s["batch_size"],
            )
        where = {"dataset": self.dataset, "language": self.language, "split": self.split}
        return [{**r, **where} for r in recs]

    def describe(self) -> str:
        """One line: name and input sizes, e.g. ``retrieval/news: 369 queries, 372 docs``."""
        return f"{self.name}: " + ", ".join(f"{v} {k}" for k, v in self.info.items())


@dataclass(frozen=True)
class SkippedTask:
    """A configured task (or group) that cannot be scored, and why."""

    name: str
    reason: str


# ---------------------------------------------------------------------------------------------- config
def _plain(cfg: Any) -> Any:
    """OmegaConf nodes -> plain Python containers (anything else unchanged)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, DictConfig | ListConfig):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return cfg


def task_entries(eval_cfg: Mapping[str, Any], types: Iterable[str] | None = None) -> list[tuple[str, dict]]:
    """``(type, settings)`` for every configured data set: defaults < type block < entry.

    Raises ValueError naming the config key for an unknown type, a missing ``corpus`` or an unknown key.
    """
    cfg = _plain(eval_cfg)
    wanted = list(types) if types is not None else list(TASK_TYPES)
    bad = [t for t in wanted if t not in TASK_TYPES]
    if bad:
        raise ValueError(f"unknown task type(s) {bad}; known: {TASK_TYPES}")
    out = []
    for task_type in wanted:
        block = dict(cfg.get(task_type) or {})
        entries = block.pop("datasets", None) or []
        allowed = {**COMMON_DEFAULTS, **TYPE_DEFAULTS[task_type]}
        for where, keys in [(f"eval.{task_type}", block)] + [
            (f"eval.{task_type}.datasets[{n}]", e) for n, e in enumerate(entries)
        ]:
            unknown = sorted(set(keys) - set(allowed))
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        for n, entry in enumerate(entries):
            settings = {**allowed, **block, **entry}
            if not settings["corpus"]:
                raise ValueError(f"eval.{task_type}.datasets[{n}]: 'corpus' is required")
            settings["split"] = settings["split"] or cfg.get("split", "test")
            settings["fractions"] = list(settings["fractions"] or DEFAULT_FRACTIONS)
            settings["name"] = settings["name"] or settings["corpus"]
            out.append((task_type, settings))
    return out


# ---------------------------------------------------------------------------------------------- building
class _Splits:
    """Each (corpus, seed, fractions) parsed and split once per ``build_tasks`` call."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._corpora: dict[str, datasets.Dataset] = {}
        self._splits: dict[tuple, dict[str, datasets.Dataset]] = {}

    def get(self, corpus: str, split: str, fractions: Sequence[float]) -> datasets.Dataset:
        key = (corpus, tuple(fractions))
        if key not in self._splits:
            if corpus not in self._corpora:
                self._corpora[corpus] = load_corpus(corpus)
            self._splits[key] = split_corpus(self._corpora[corpus], corpus, self.seed, fractions)
        return self._splits[key][split]


def _cap(n: int, cap: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded draw of ``min(n, cap)`` of ``range(n)`` (all when ``cap`` is None)."""
    if cap is None or n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(cap), replace=False))


def _column(ds: datasets.Dataset, column: str, where: str) -> list:
    """A whole column as a list (one Arrow conversion; iterating ``ds[column]`` goes row by row)."""
    if column not in ds.column_names:
        raise ValueError(f"{where}: no column {column!r} (columns: {ds.column_names})")
    return ds.select_columns([column]).to_dict()[column]


def retrieval_inputs(queries: Sequence[str], documents: Sequence[str]) -> dict[str, Any]:
    """Deduplicated queries, corpus and binary qrels from (query, document) rows (module docstring)."""
    qid: dict[str, int] = {}
    did: dict[str, int] = {}
    q_texts: list[str] = []
    d_texts: list[str] = []
    qrels: dict[int, dict[int, int]] = {}
    for q, d in zip(queries, documents, strict=True):
        nq, nd = normalise_text(q), normalise_text(d)
        if nq not in qid:
            qid[nq] = len(q_texts)
            q_texts.append(q)
        if nd not in did:
            did[nd] = len(d_texts)
            d_texts.append(d)
        qrels.setdefault(qid[nq], {})[did[nd]] = 1
    return {"queries": q_texts, "corpus": d_texts, "qrels": qrels}


def _retrieval(ds: datasets.Dataset, s: dict, where: str) -> tuple[dict, dict]:
    inputs = retrieval_inputs(_column(ds, s["query_column"], where), _column(ds, s["document_column"], where))
    keep = _cap(len(inputs["queries"]), s["max_queries"], s["sample_seed"])
    if len(keep) < len(inputs["queries"]):
        inputs["queries"] = [inputs["queries"][i] for i in keep]
        inputs["qrels"] = {new: inputs["qrels"][int(old)] for new, old in enumerate(keep)}
    info = {"queries": len(inputs["queries"]), "docs": len(inputs["corpus"]), "pairs": len(ds)}
    return inputs, info


def _sts(ds: datasets.Dataset, s: dict, where: str) -> tuple[dict, dict]:
    a = _column(ds, s["text_a_column"], where)
    b = _column(ds, s["text_b_column"], where)
    y = _column(ds, s["score_column"], where)
    bad = [n for n, v in enumerate(y) if v is None]
    if bad:
        raise ValueError(f"{where}: rows {bad[:5]} have no {s['score_column']!r}")
    keep = _cap(len(a), s["max_pairs"], s["sample_seed"])
    inputs = {
        "texts_a": [a[i] for i in keep],
        "texts_b": [b[i] for i in keep],
        "scores": [float(y[i]) for i in keep],
    }
    return inputs, {"pairs": len(keep), "texts": len(set(inputs["texts_a"]) | set(inputs["texts_b"]))}


def _labelled(ds: datasets.Dataset, s: dict, where: str) -> tuple[list[str], list[str]]:
    texts = _column(ds, s["text_column"], where)
    labels = _column(ds, s["label_column"], where)
    keep = [n for n, lab in enumerate(labels) if lab is not None and str(lab).strip()]
    if len(keep) < len(labels):
        log.info(
            "%s: %d of %d rows have an empty %r and are not used",
            where,
            len(labels) - len(keep),
            len(labels),
            s["label_column"],
        )
    return [texts[n] for n in keep], [str(labels[n]) for n in keep]


def _classification(ds: datasets.Dataset, train: datasets.Dataset, s: dict, where: str) -> tuple[dict, dict]:
    train_texts, train_labels = _labelled(train, s, f"{where} ({s['train_split']} split)")
    test_texts, test_labels = _labelled(ds, s, where)
    keep = _cap(len(test_texts), s["max_test"], s["sample_seed"])
    inputs = {
        "train_texts": train_texts,
        "train_labels": train_labels,
        "test_texts": [test_texts[i] for i in keep],
        "test_labels": [test_labels[i] for i in keep],
    }
    info = {"train": len(train_texts), "test": len(keep), "labels": len(set(train_labels))}
    return inputs, info


def _clustering(ds: datasets.Dataset, s: dict, where: str) -> tuple[dict, dict]:
    texts, labels = _labelled(ds, s, where)
    keep = _cap(len(texts), s["max_docs"], s["sample_seed"])
    inputs = {"texts": [texts[i] for i in keep], "labels": [labels[i] for i in keep]}
    return inputs, {"docs": len(keep), "labels": len(set(inputs["labels"]))}


def _unscorable(task_type: str, inputs: dict) -> str | None:
    """Why a built task cannot be scored, or None."""
    if task_type == "classification":
        if len(set(inputs["train_labels"])) < 2:
            return f"{len(set(inputs['train_labels']))} training label(s); needs >= 2"
        if not inputs["test_texts"]:
            return "no test rows"
    if task_type == "clustering" and not 2 <= len(set(inputs["labels"])) <= len(inputs["labels"]):
        return f"{len(set(inputs['labels']))} label(s) for {len(inputs['labels'])} texts; needs >= 2"
    if task_type == "sts" and len(inputs["scores"]) < 2:
        return f"{len(inputs['scores'])} pair(s); needs >= 2"
    return None


def _single_value(values: list) -> str | None:
    distinct = {v for v in values if v}
    return distinct.pop() if len(distinct) == 1 else None


def _empty_reason(ds: datasets.Dataset, corpus: str, split: str) -> str:
    stats = dataset_stats(ds)
    filtered = stats.get("filtered")
    why = f" (corpus {corpus!r}: {stats.get('raw_rows')} raw rows, filtered {filtered})" if filtered else ""
    return f"0 rows in the {split} split{why}"


Builder = Callable[..., tuple[dict, dict]]


_BUILT: dict[str, tuple[list[EvalTask], list[SkippedTask]]] = {}


def build_tasks(
    eval_cfg: Mapping[str, Any], types: Iterable[str] | None = None, reuse: bool = True
) -> tuple[list[EvalTask], list[SkippedTask]]:
    """The configured tasks (in config order) and the skipped ones, each skip logged with its reason.

    ``eval_cfg`` holds ``split_seed``, ``split`` and one block per task type (module docstring);
    ``types`` restricts to some task types. With ``reuse`` the result of an identical earlier call
    in this process (same config, types and cache root) is returned as is (a sweep evaluating many
    runs parses and splits the corpora once); treat the tasks as read-only.
    """
    cfg = _plain(eval_cfg)
    types = list(types) if types is not None else None
    relevant = {k: cfg.get(k) for k in ("split_seed", "split", *TASK_TYPES)}  # not dims, precisions, ...
    memo_key = json.dumps([relevant, types, str(cache_root())], sort_keys=True, default=str)
    if reuse and memo_key in _BUILT:
        return _BUILT[memo_key]
    _BUILT[memo_key] = built = _build_tasks(cfg, types)
    return built


def _build_tasks(cfg: dict, types: list[str] | None) -> tuple[list[EvalTask], list[SkippedTask]]:
    splits = _Splits(int(cfg.get("split_seed", 0)))
    tasks: list[EvalTask] = []
    skipped: list[SkippedTask] = []

    def skip(name: str, reason: str) -> None:
        log.warning("eval task %s skipped: %s", name, reason)
        skipped.append(SkippedTask(name, reason))

    for task_type, s in task_entries(cfg, types):
        base = f"{task_type}/{s['name']}"
        ds = splits.get(s["corpus"], s["split"], s["fractions"])
        if len(ds) == 0:
            skip(base, _empty_reason(ds, s["corpus"], s["split"]))
            continue
        train = (
            splits.get(s["corpus"], s["train_split"], s["fractions"])
            if task_type == "classification"
            else None
        )
        if s["group_by"]:
            values = _column(ds, s["group_by"], f"{base} ({s['split']} split)")
            groups: dict[str, list[int]] = {}
            for n, v in enumerate(values):
                groups.setdefault(str(v), []).append(n)
            parts = [(g, ds.select(rows), f"{base}/{g}") for g, rows in sorted(groups.items())]
        else:
            parts = [(None, ds, base)]
        settings = {k: v for k, v in s.items() if k != "name"}
        for group, part, name in parts:
            if len(part) < s["min_rows"]:
                skip(name, f"{len(part)} {s['split']} rows < min_rows={s['min_rows']}")
                continue
            where = f"{name} ({s['corpus']} {s['split']} split)"
            if task_type == "classification":
                tr = train
                if group is not None:
                    tr = train.filter(lambda v, g=group: str(v) == g, input_columns=s["group_by"])
                inputs, info = _classification(part, tr, s, where)
            else:
                build: Builder = {"retrieval": _retrieval, "sts": _sts, "clustering": _clustering}[task_type]
                inputs, info = build(part, s, where)
            reason = _unscorable(task_type, inputs)
            if reason:
                skip(name, reason)
                continue
            language = (
                group if s["group_by"] == "language" else _single_value(_column(part, "language", where))
            )
            tasks.append(EvalTask(task_type, s["corpus"], language, s["split"], name, inputs, settings, info))
    return tasks, skipped
