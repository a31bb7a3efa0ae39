"""One object per evaluation task type: its config keys, inputs builder, skip rule, run and main metric.

    TASK_TYPES                          ("retrieval", "sts", "classification", "clustering")
    REGISTRY[name] -> TaskType          inputs(rows, settings, where, train) -> (inputs, info)
                                        unscorable(inputs) -> reason | None
                                        run(encode, inputs, settings, dims, precisions) -> records
                                        held_out_texts(inputs) -> texts
                                        encoded_texts(inputs, settings) -> {prompt: texts}
    MAIN_METRIC[name] -> metric         the summary's score of the type

Per task type (columns are schema columns, configurable; every value comes from ``conf/eval``):

- **retrieval** (``query_column`` -> ``document_column``): queries and documents are deduplicated on
  ``normalise_text``; query q_a (one per distinct query text) and document d_b (one per distinct
  document text) are relevant, ``qrels[a][b] = 1``, iff some row pairs them. The corpus is every
  distinct document of the split. ``max_queries`` keeps a seeded subset of queries (not documents).
  Main metric nDCG@10. ``index`` other than ``flat`` adds ``ann_ndcg@10`` records: the same queries
  through an approximate index, against the exact one (:mod:`jina5.eval.ann`).
- **sts** (``text_a_column``, ``text_b_column``, ``score_column``): the pairs and their scores;
  ``max_pairs`` keeps a seeded subset. Main metric Spearman.
- **classification** (``text_column``, ``label_column``): train texts/labels from ``train_split``,
  test texts/labels from ``split``; ``max_test`` keeps a seeded subset of the test rows. Main metric
  accuracy.
- **clustering** (``text_column``, ``label_column``): texts and labels of the split; ``max_docs``
  keeps a seeded subset. Main metric V-measure.

Every cap is :func:`jina5.data.splits.seeded_rows` with the entry's ``sample_seed``, so the inputs
are a pure function of the config and the corpus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import datasets

from jina5.data.schema import normalise_text
from jina5.data.splits import seeded_rows
from jina5.eval.ann import ANN_KEYS, AnnIndex, evaluate_ann
from jina5.eval.classification import evaluate_classification, probe_samples
from jina5.eval.clustering import evaluate_clustering
from jina5.eval.metrics import Encode
from jina5.eval.retrieval import evaluate_retrieval
from jina5.eval.sts import evaluate_sts

log = logging.getLogger(__name__)

Inputs = dict[str, Any]
Info = dict[str, int]  # counts for the progress line, e.g. {"queries": 369, "docs": 372}


def column(rows: datasets.Dataset, name: str, where: str) -> list:
    """A whole column as a list (one Arrow conversion; iterating ``rows[name]`` goes row by row)."""
    if name not in rows.column_names:
        raise ValueError(f"{where}: no column {name!r} (columns: {rows.column_names})")
    return rows.select_columns([name]).to_dict()[name]


def labelled(rows: datasets.Dataset, s: dict, where: str) -> tuple[list[str], list[str]]:
    """(texts, labels) of the rows with a non-empty ``label_column`` (the others are counted in the log)."""
    texts = column(rows, s["text_column"], where)
    labels = column(rows, s["label_column"], where)
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


def retrieval_inputs(queries: Sequence[str], documents: Sequence[str]) -> Inputs:
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


class TaskType:
    """What the suite needs to know about one kind of task.

    ``keys`` are the config keys of the type's block (beyond :data:`COMMON_KEYS`); their values
    live in ``conf/eval/default.yaml`` only. ``train`` in :meth:`inputs` returns the (group's) rows of
    the entry's ``train_split``, read only by a type that trains on them (classification's probe).
    """

    name: ClassVar[str]
    main_metric: ClassVar[str]
    keys: ClassVar[tuple[str, ...]]

    def inputs(
        self, rows: datasets.Dataset, s: dict, where: str, train: Callable[[], datasets.Dataset]
    ) -> tuple[Inputs, Info]:
        raise NotImplementedError

    def unscorable(self, inputs: Inputs) -> str | None:
        """Why a built task cannot be scored, or None."""
        return None

    def keyed(self, settings: dict) -> dict:
        """The settings that change the task's records: what its cache key hashes (all of them)."""
        return settings

    def held_out_texts(self, inputs: Inputs) -> list[str]:
        """Every text the task scores on (not the classification probe's training texts)."""
        raise NotImplementedError

    def encoded_texts(self, inputs: Inputs, s: dict) -> dict[str, list[str]]:
        """Every text :meth:`run` encodes, by the prompt it asks for: what the suite encodes for all its
        tasks in one pass (:meth:`jina5.eval.encoding.MemoEncode.prefetch`) before running them."""
        raise NotImplementedError

    def run(
        self,
        encode: Encode,
        inputs: Inputs,
        s: dict,
        dims: Sequence[int] | None,
        precisions: Sequence[str],
    ) -> list[dict]:
        """Metric records for every (dim, precision)."""
        raise NotImplementedError


class Retrieval(TaskType):
    name = "retrieval"
    main_metric = "ndcg@10"
    keys = ("query_column", "document_column", "k_values", "metrics", "rescore", "max_queries", *ANN_KEYS)

    def keyed(self, settings):
        """Without the approximate-search keys under ``index: flat`` (exact search only): they change
        nothing then, and results stored before they existed keep their keys."""
        if settings["index"] != "flat":
            return settings
        return {k: v for k, v in settings.items() if k not in ANN_KEYS}

    def inputs(self, rows, s, where, train):
        inputs = retrieval_inputs(
            column(rows, s["query_column"], where), column(rows, s["document_column"], where)
        )
        keep = seeded_rows(len(inputs["queries"]), s["max_queries"], s["sample_seed"])
        if len(keep) < len(inputs["queries"]):
            inputs["queries"] = [inputs["queries"][i] for i in keep]
            inputs["qrels"] = {new: inputs["qrels"][int(old)] for new, old in enumerate(keep)}
        return inputs, {"queries": len(inputs["queries"]), "docs": len(inputs["corpus"]), "pairs": len(rows)}

    def held_out_texts(self, inputs):
        return list(inputs["queries"]) + list(inputs["corpus"])

    def encoded_texts(self, inputs, s):
        scored = [
            inputs["queries"][int(q)]
            for q, rel in inputs["qrels"].items()
            if any(g > 0 for g in rel.values())
        ]
        return {"query": scored, "document": list(inputs["corpus"])}

    def run(self, encode, inputs, s, dims, precisions):
        qrels = {int(q): {int(d): g for d, g in rel.items()} for q, rel in inputs["qrels"].items()}
        recs = evaluate_retrieval(
            encode,
            inputs["queries"],
            inputs["corpus"],
            qrels,
            dims,
            precisions,
            k_values=s["k_values"],
            rescore=s["rescore"],
        )
        if s["metrics"] is not None:
            recs = [r for r in recs if r["metric"] in s["metrics"]]
        ann = AnnIndex.from_settings(s)
        if ann is not None:
            k = int(self.main_metric.partition("@")[2])
            recs += evaluate_ann(encode, inputs["queries"], inputs["corpus"], qrels, dims, ann, k)
        return recs


class Sts(TaskType):
    name = "sts"
    main_metric = "spearman"
    keys = ("text_a_column", "text_b_column", "score_column", "max_pairs")

    def inputs(self, rows, s, where, train):
        a = column(rows, s["text_a_column"], where)
        b = column(rows, s["text_b_column"], where)
        y = column(rows, s["score_column"], where)
        bad = [n for n, v in enumerate(y) if v is None]
        if bad:
            raise ValueError(f"{where}: rows {bad[:5]} have no {s['score_column']!r}")
        keep = seeded_rows(len(a), s["max_pairs"], s["sample_seed"])
        inputs = {
            "texts_a": [a[i] for i in keep],
            "texts_b": [b[i] for i in keep],
            "scores": [float(y[i]) for i in keep],
        }
        return inputs, {"pairs": len(keep), "texts": len(set(inputs["texts_a"]) | set(inputs["texts_b"]))}

    def unscorable(self, inputs):
        n = len(inputs["scores"])
        return f"{n} pair(s); needs >= 2" if n < 2 else None

    def held_out_texts(self, inputs):
        return list(inputs["texts_a"]) + list(inputs["texts_b"])

    def encoded_texts(self, inputs, s):
        return {"document": self.held_out_texts(inputs)}

    def run(self, encode, inputs, s, dims, precisions):
        return evaluate_sts(encode, inputs["texts_a"], inputs["texts_b"], inputs["scores"], dims, precisions)


class Classification(TaskType):
    name = "classification"
    main_metric = "accuracy"
    keys = ("text_column", "label_column", "train_split", "n_per_class", "seeds", "max_iter", "max_test")

    def inputs(self, rows, s, where, train):
        train_texts, train_labels = labelled(train(), s, f"{where} ({s['train_split']} split)")
        test_texts, test_labels = labelled(rows, s, where)
        keep = seeded_rows(len(test_texts), s["max_test"], s["sample_seed"])
        inputs = {
            "train_texts": train_texts,
            "train_labels": train_labels,
            "test_texts": [test_texts[i] for i in keep],
            "test_labels": [test_labels[i] for i in keep],
        }
        return inputs, {"train": len(train_texts), "test": len(keep), "labels": len(set(train_labels))}

    def unscorable(self, inputs):
        if len(set(inputs["train_labels"])) < 2:
            return f"{len(set(inputs['train_labels']))} training label(s); needs >= 2"
        return None if inputs["test_texts"] else "no test rows"

    def held_out_texts(self, inputs):
        return list(inputs["test_texts"])

    def encoded_texts(self, inputs, s):
        _, used = probe_samples(inputs["train_labels"], s["n_per_class"], s["seeds"])
        return {"document": [inputs["train_texts"][i] for i in used] + list(inputs["test_texts"])}

    def run(self, encode, inputs, s, dims, precisions):
        settings = {k: s[k] for k in ("n_per_class", "seeds", "max_iter")}
        return evaluate_classification(encode, **inputs, dims=dims, precisions=precisions, **settings)


class Clustering(TaskType):
    name = "clustering"
    main_metric = "v_measure"
    keys = ("text_column", "label_column", "seeds", "max_docs", "batch_size")

    def inputs(self, rows, s, where, train):
        texts, labels = labelled(rows, s, where)
        keep = seeded_rows(len(texts), s["max_docs"], s["sample_seed"])
        inputs = {"texts": [texts[i] for i in keep], "labels": [labels[i] for i in keep]}
        return inputs, {"docs": len(keep), "labels": len(set(inputs["labels"]))}

    def unscorable(self, inputs):
        k, n = len(set(inputs["labels"])), len(inputs["labels"])
        return None if 2 <= k <= n else f"{k} label(s) for {n} texts; needs >= 2"

    def held_out_texts(self, inputs):
        return list(inputs["texts"])

    def encoded_texts(self, inputs, s):
        return {"document": self.held_out_texts(inputs)}

    def run(self, encode, inputs, s, dims, precisions):
        # max_docs=None: the inputs are already capped (max_docs, sample_seed)
        settings = {k: s[k] for k in ("seeds", "batch_size")}
        return evaluate_clustering(
            encode, **inputs, dims=dims, precisions=precisions, max_docs=None, **settings
        )


REGISTRY: dict[str, TaskType] = {t.name: t for t in (Retrieval(), Sts(), Classification(), Clustering())}
TASK_TYPES: tuple[str, ...] = tuple(REGISTRY)
MAIN_METRIC: dict[str, str] = {name: t.main_metric for name, t in REGISTRY.items()}
# Keys of every data-set entry, whatever its type (values: ``task_defaults`` in conf/eval/default.yaml).
COMMON_KEYS: tuple[str, ...] = ("corpus", "name", "split", "fractions", "group_by", "min_rows", "sample_seed")
