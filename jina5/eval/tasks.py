"""Evaluation tasks built from the held-out splits of the bundled corpora (config: ``conf/eval/*.yaml``).

One config block per task type lists its data sets; an entry's keys override its type block, which
overrides ``task_defaults`` (every key and its value is in ``conf/eval/default.yaml``)::

    retrieval:
      k_values: [10, 100]
      datasets:
        - {corpus: news}
        - {corpus: chatterbot, group_by: language}    # one task per language

``build_tasks(eval_cfg)`` turns every entry into :class:`EvalTask` objects (the evaluator inputs,
ready to run) and :class:`SkippedTask` notes (an entry or language that cannot be scored, with the
reason, which is logged and reported in the task list). Inputs always come from the ``split``
(``null``: the config's top-level ``split``) of ``split_corpus(load_corpus(corpus), corpus,
split_seed, fractions)``, the same deterministic, deduplicated split training uses; what each task
type builds from those rows is in :mod:`jina5.eval.task_types`.

``group_by`` (a column, e.g. ``language``) makes one task per value; groups with fewer than
``min_rows`` rows are skipped. A task's :attr:`EvalTask.key` hashes its name, settings and inputs:
the results store caches baselines under it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import datasets

from jina5.assets import cache_root
from jina5.data.corpora import load_corpus
from jina5.data.schema import dataset_stats
from jina5.data.splits import DEFAULT_FRACTIONS, split_corpus
from jina5.eval.config import plain, require
from jina5.eval.metrics import Encode
from jina5.eval.task_cache import load_or_build
from jina5.eval.task_types import COMMON_KEYS, REGISTRY, TASK_TYPES, TaskType, column

log = logging.getLogger(__name__)

# Bump when the way inputs or records are built changes: it invalidates cached baseline results.
SUITE_VERSION = 1


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
    def kind(self) -> TaskType:
        """The task type object (:data:`jina5.eval.task_types.REGISTRY`)."""
        return REGISTRY[self.type]

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
                self.kind.keyed(self.settings),
            ]
            h.update(json.dumps(head, sort_keys=True, default=str).encode())
            h.update(json.dumps(self.inputs, sort_keys=True, default=str).encode())
            self._key = h.hexdigest()
        return self._key

    def held_out_texts(self) -> list[str]:
        """Every text the task scores on (not the classification probe's training texts)."""
        return self.kind.held_out_texts(self.inputs)

    def encoded_texts(self) -> dict[str, list[str]]:
        """Every text :meth:`run` encodes, by prompt (:meth:`jina5.eval.task_types.TaskType.encoded_texts`)."""
        return self.kind.encoded_texts(self.inputs, self.settings)

    def run(self, encode: Encode, dims: Sequence[int] | None, precisions: Sequence[str]) -> list[dict]:
        """Score the task with ``encode`` for every (dim, precision); returns metric records."""
        recs = self.kind.run(encode, self.inputs, self.settings, dims, precisions)
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


def format_task_list(tasks: Sequence[EvalTask], skipped: Sequence[SkippedTask]) -> str:
    """The task list: every task with its input sizes, then every skipped task with its reason."""
    lines = [f"  {t.describe()}" for t in tasks]
    lines += [f"  SKIPPED {s.name}: {s.reason}" for s in skipped]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- config
def task_entries(eval_cfg: Mapping[str, Any], types: Iterable[str] | None = None) -> list[tuple[str, dict]]:
    """``(type, settings)`` for every configured data set: ``task_defaults`` < type block < entry.

    Raises ValueError naming the config key for an unknown type, an unknown key, or a key that is
    set nowhere (``corpus`` included: each entry names one).
    """
    cfg = plain(eval_cfg)
    wanted = list(types) if types is not None else list(TASK_TYPES)
    bad = [t for t in wanted if t not in TASK_TYPES]
    if bad:
        raise ValueError(f"unknown task type(s) {bad}; known: {TASK_TYPES}")
    defaults = dict(require(cfg, "task_defaults"))
    out = []
    for task_type in wanted:
        block = dict(require(cfg, task_type) or {})
        entries = block.pop("datasets", None) or []
        allowed = (*COMMON_KEYS, *REGISTRY[task_type].keys)
        for where, keys in [
            ("eval.task_defaults", defaults),
            (f"eval.{task_type}", block),
            *((f"eval.{task_type}.datasets[{n}]", e) for n, e in enumerate(entries)),
        ]:
            unknown = sorted(set(keys) - set(allowed))
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        for n, entry in enumerate(entries):
            settings = {**defaults, **block, **entry}
            for key in allowed:
                if key not in settings or (key == "corpus" and not settings[key]):
                    raise ValueError(
                        f"eval.{task_type}.datasets[{n}]: {key!r} is required "
                        f"(set it in the entry, eval.{task_type} or eval.task_defaults)"
                    )
            settings["split"] = settings["split"] or require(cfg, "split")
            settings["fractions"] = list(settings["fractions"] or DEFAULT_FRACTIONS)
            settings["name"] = settings["name"] or settings["corpus"]
            out.append((task_type, {k: settings[k] for k in allowed}))
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


def _single_value(values: list) -> str | None:
    distinct = {v for v in values if v}
    return distinct.pop() if len(distinct) == 1 else None


def _empty_reason(ds: datasets.Dataset, corpus: str, split: str) -> str:
    stats = dataset_stats(ds)
    filtered = stats.get("filtered")
    why = f" (corpus {corpus!r}: {stats.get('raw_rows')} raw rows, filtered {filtered})" if filtered else ""
    return f"0 rows in the {split} split{why}"


def _train_rows(splits: _Splits, s: dict, group: str | None) -> datasets.Dataset:
    """The entry's ``train_split`` rows (of its ``group_by`` group, if any)."""
    rows = splits.get(s["corpus"], s["train_split"], s["fractions"])
    if group is None:
        return rows
    return rows.filter(lambda value: str(value) == group, input_columns=s["group_by"])


_BUILT: dict[str, tuple[list[EvalTask], list[SkippedTask]]] = {}


def build_tasks(
    eval_cfg: Mapping[str, Any], types: Iterable[str] | None = None, reuse: bool = True
) -> tuple[list[EvalTask], list[SkippedTask]]:
    """The configured tasks (in config order) and the skipped ones, each skip logged with its reason.

    ``eval_cfg`` holds ``split_seed``, ``split``, ``task_defaults`` and one block per task type
    (module docstring); ``types`` restricts to some task types. With ``reuse`` the result of an
    identical earlier call in this process (same config, types and cache root) is returned as is (a
    sweep evaluating many runs parses and splits the corpora once), else the on-disk entry of the same
    config, code and data files (:mod:`jina5.eval.task_cache`); without, the tasks are built and that
    entry is replaced. Treat the tasks as read-only.
    """
    cfg = plain(eval_cfg)
    types = list(types) if types is not None else None
    relevant = {k: cfg.get(k) for k in ("split_seed", "split", "task_defaults", *TASK_TYPES)}  # not dims, ...
    memo_key = json.dumps([relevant, types, str(cache_root())], sort_keys=True, default=str)
    if reuse and memo_key in _BUILT:
        return _BUILT[memo_key]
    built = load_or_build([relevant, types], lambda: _build_tasks(cfg, types), reuse)
    _BUILT[memo_key] = built
    return built


def _build_tasks(cfg: dict, types: list[str] | None) -> tuple[list[EvalTask], list[SkippedTask]]:
    splits = _Splits(int(require(cfg, "split_seed")))
    tasks: list[EvalTask] = []
    skipped: list[SkippedTask] = []

    def skip(name: str, reason: str) -> None:
        log.warning("eval task %s skipped: %s", name, reason)
        skipped.append(SkippedTask(name, reason))

    for task_type, s in task_entries(cfg, types):
        kind = REGISTRY[task_type]
        base = f"{task_type}/{s['name']}"
        ds = splits.get(s["corpus"], s["split"], s["fractions"])
        if len(ds) == 0:
            skip(base, _empty_reason(ds, s["corpus"], s["split"]))
            continue
        if s["group_by"]:
            values = column(ds, s["group_by"], f"{base} ({s['split']} split)")
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
            inputs, info = kind.inputs(part, s, where, partial(_train_rows, splits, s, group))
            reason = kind.unscorable(inputs)
            if reason:
                skip(name, reason)
                continue
            language = (
                group if s["group_by"] == "language" else _single_value(column(part, "language", where))
            )
            tasks.append(EvalTask(task_type, s["corpus"], language, s["split"], name, inputs, settings, info))
    return tasks, skipped
