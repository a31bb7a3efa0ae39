"""The training mix as configured: ``data.datasets`` (dataset name -> ``DatasetSpec`` settings, in
sampling order; a dataset set to null is left out) -> ``DatasetSpec`` objects, with the smoke presets'
caps on rows and batch size applied (``mix_specs``); and their train tables (``load_mix_tables``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from jina5.data.pairs import DatasetSpec, PairTable, load_pair_table
from jina5.data.schema import normalise_text
from jina5.data.splits import CorpusSplits
from jina5.model.settings import positive_int


def mix_specs(
    datasets: Mapping[str, Mapping | None],
    max_rows_cap: int | None = None,
    batch_size_cap: int | None = None,
    language: str = "",
) -> list[DatasetSpec]:
    """The mix as ``DatasetSpec`` objects, in mapping order: ``DatasetSpec(name, **settings)`` for each
    ``name: settings`` whose settings are not None, with ``max_rows = min(max_rows, max_rows_cap)`` and
    ``batch_size = min(batch_size, batch_size_cap)`` (None: no cap), and ``language`` as the language of
    every source dataset that names none (bundled corpora carry their own)."""
    if not isinstance(datasets, Mapping):
        raise TypeError(
            f"data.datasets must map each dataset name to its settings ({{news: {{batch_size: 32}}, ...}}), "
            f"got {type(datasets).__name__}"
        )
    specs = []
    for name, settings in datasets.items():
        if settings is None:
            continue
        if "name" in settings:
            raise ValueError(f"data.datasets.{name}: the key is the name; drop 'name: {settings['name']}'")
        specs.append(DatasetSpec(name, **settings))
    if specs and all(spec.weight == 0 for spec in specs):
        raise ValueError(
            f"data.datasets: every dataset's weight is 0 ({', '.join(s.name for s in specs)}), so no step "
            "can draw one; give one a positive weight, or null (its rows)"
        )
    if max_rows_cap is not None:
        positive_int(max_rows_cap, "data.max_rows_cap", "a cap on every dataset's rows; null: none")
        for spec in specs:
            spec.max_rows = min(spec.max_rows or max_rows_cap, max_rows_cap)
    if batch_size_cap is not None:
        positive_int(batch_size_cap, "data.batch_size_cap", "a cap on every dataset's batch size; null: none")
        for spec in specs:
            spec.batch_size = min(spec.batch_size, batch_size_cap)
    for spec in specs:
        if spec.source and not spec.language:
            spec.language = language
    return specs


def check_mix_config(data: Mapping) -> None:
    """Validate a ``PairDataModule`` config's mix (``data.datasets``, its caps, the weights) as the data
    module will, so that a bad value fails before any model loads (``jina5.train.build``)."""
    if "datasets" in data:
        mix_specs(data["datasets"], data.get("max_rows_cap"), data.get("batch_size_cap"))


def load_mix_tables(
    specs: Sequence[DatasetSpec],
    split_seed: int,
    sample_seed: int,
    held_out: set[str],
    splits: CorpusSplits,
    shard: Callable[[DatasetSpec], tuple[int, int]],
) -> list[PairTable]:
    """Every dataset's train table, in mix order: pair tables first, then texts-only tables, each without
    the texts an earlier-loaded table has (normalised), none holding a ``held_out`` (normalised) text.
    ``shard(spec)``: the (rank, world) share of the rows this process reads; ``sample_seed``: the seed of
    every ``max_rows`` draw and label-triplet draw."""
    texts_only = [s for s in specs if s.texts_only]
    tables: dict[int, PairTable] = {}
    for i, spec in enumerate(specs):
        if not spec.texts_only:
            tables[i] = load_pair_table(spec, "train", split_seed, sample_seed, held_out, splits, shard(spec))
    if not texts_only:
        return [tables[i] for i in range(len(specs))]
    seen = {normalise_text(t) for table in tables.values() for t in (*table.queries, *table.documents)}
    for i, spec in enumerate(specs):
        if spec.texts_only:
            tables[i] = load_pair_table(
                spec, "train", split_seed, sample_seed, held_out, splits, shard(spec), seen
            )
            seen.update(normalise_text(t) for t in tables[i].documents)
    return [tables[i] for i in range(len(specs))]
