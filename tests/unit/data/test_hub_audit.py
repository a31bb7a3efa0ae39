"""Every hub dataset a data config names carries its audit: the comment block right above the entry says
``checked YYYY-MM: card at hf.co/datasets/<name> ... split <split> ...`` (with the subset, when the source
names one) or ``unverified: <why>``. A new hf: entry cannot skip the check against its dataset card."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from jina5.data.sources import _parse_hf

DATA_CONFIGS = sorted((Path(__file__).resolve().parents[3] / "conf" / "data").glob("*.yaml"))
CHECKED = re.compile(r"^checked \d{4}-\d{2}: card at hf\.co/datasets/(\S+) ")
UNVERIFIED = re.compile(r"^unverified: \S")


def hub_entries(path: Path) -> list[tuple[str, str]]:
    """(dataset name, hf spec without ``hf:``) of each dataset of ``path`` read from the hub."""
    datasets = (yaml.safe_load(path.read_text()) or {}).get("datasets") or {}
    return [
        (name, spec["source"].removeprefix("hf:"))
        for name, spec in datasets.items()
        if isinstance(spec, dict) and str(spec.get("source", "")).startswith("hf:")
    ]


def audit_comment(lines: list[str], name: str) -> str:
    """The comment block right above the ``<name>:`` line of the datasets mapping, one string."""
    at = next(i for i, line in enumerate(lines) if re.match(rf"^\s+{re.escape(name)}:\s", line))
    block = []
    while at > 0 and lines[at - 1].lstrip().startswith("#"):
        at -= 1
        block.insert(0, lines[at].strip().removeprefix("#").strip())
    return " ".join(block)


def audit_problem(comment: str, hub_spec: str) -> str | None:
    """What the audit comment lacks for the source ``hub_spec`` (``<name>[:<config>]:<split>``), or None."""
    if UNVERIFIED.match(comment):
        return None
    checked = CHECKED.match(comment)
    if not checked:
        return "no 'checked YYYY-MM: card at hf.co/datasets/<name> ...' or 'unverified: <why>' comment"
    name, config, split = _parse_hf(hub_spec)
    if checked.group(1) != name:
        return f"the comment checked the card of {checked.group(1)!r}, the source reads {name!r}"
    if f"split {split}" not in comment:
        return f"the comment does not say the card lists 'split {split}'"
    if config and config not in comment:
        return f"the comment does not say the card lists the subset {config!r}"
    return None


def test_every_hub_dataset_of_the_data_configs_carries_its_audit():
    checked = set()
    for path in DATA_CONFIGS:
        lines = path.read_text().splitlines()
        for name, hub_spec in hub_entries(path):
            problem = audit_problem(audit_comment(lines, name), hub_spec)
            assert problem is None, (
                f"{path.name}: dataset {name!r} (hf:{hub_spec}): {problem}. Check the source's name, subset, "
                "split and columns against its dataset card and say so in the comment right above the entry"
            )
            checked.add(hub_spec)
    assert len(checked) >= 15  # the configs' 15 distinct hub sources (a parse that finds none fails)


@pytest.mark.parametrize(
    "comment, spec, problem",
    [
        ("checked 2026-12: card at hf.co/datasets/a/b lists split train", "a/b:train", None),
        ("unverified: no card stored", "a/b:train", None),
        ("checked 2026-12: card at hf.co/datasets/a/c lists split train", "a/b:train", "of 'a/c'"),
        ("checked 2026-12: card at hf.co/datasets/a/b lists split test", "a/b:train", "'split train'"),
        ("checked 2026-12: card at hf.co/datasets/a/b lists split train", "a/b:pair:train", "'pair'"),
        ("looked at it", "a/b:train", "no 'checked"),
    ],
)
def test_audit_problem_names_what_the_comment_lacks(comment, spec, problem):
    got = audit_problem(comment, spec)
    assert got is None if problem is None else problem in got


def test_an_entry_without_its_audit_fails_naming_it(tmp_path):
    """Follow the error's advice once: the failing entry passes after the comment is added above it."""
    entry = '  new_set: {source: "hf:org/new_set:pair:train", columns: {a: query, b: document}}\n'
    config = tmp_path / "paper_new.yaml"
    config.write_text("datasets:\n" + entry)
    [(name, spec)] = hub_entries(config)
    assert "no 'checked" in audit_problem(audit_comment(config.read_text().splitlines(), name), spec)
    comment = "  # checked 2026-12: card at hf.co/datasets/org/new_set lists subset pair, split train\n"
    config.write_text("datasets:\n" + comment + entry)
    assert audit_problem(audit_comment(config.read_text().splitlines(), name), spec) is None
