"""Tab completion (``-sc query=bash``, what the script of ``eval "$(jina5-train -sc install=bash)"`` asks):
nested experiment values complete, Hydra's own answers stay (``jina5.runs.completion``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from jina5.conf import CONF_DIR

import jina5.train

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def query(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Callable[..., list[str]]:
    """What a command offers for a command line (the cursor at its end): its console script's function
    (``jina5.train.main`` for ``jina5-train``) run in-process as the completion script runs the program."""

    def ask(line: str, main: Callable[[], None] = jina5.train.main) -> list[str]:
        monkeypatch.setattr(sys, "argv", [line.split()[0], "-sc", "query=bash"])
        monkeypatch.setenv("COMP_LINE", line)
        monkeypatch.setenv("COMP_POINT", str(len(line)))
        capsys.readouterr()
        main()
        return capsys.readouterr().out.split()

    return ask


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "jina5-train experiment=abl",
            [
                "experiment=ablation/combined",
                "experiment=ablation/pure_contrastive",
                "experiment=ablation/pure_distill",
            ],
        ),
        ("jina5-train seed=1 +experiment=truncation/comb", ["+experiment=truncation/combined_matryoshka"]),
        # not Hydra's `experiment/`; `export` is a node (export.rope_theta, ...)
        ("jina5-train exp", ["experiment=", "experiment_name=", "export."]),
        ("jina5-train debug=", ["debug=smoke"]),
        ("jina5-train scheduler=", ["scheduler=constant", "scheduler=warmup_cosine"]),  # Hydra's own
    ],
)
def test_completion(query, line, expected):
    assert query(line) == expected


def test_every_experiment_completes(query):
    offered = query("jina5-train experiment=")
    on_disk = sorted(
        "experiment=" + p.relative_to(CONF_DIR / "experiment").with_suffix("").as_posix()
        for p in (CONF_DIR / "experiment").rglob("*.yaml")
    )
    assert offered == on_disk and len(on_disk) >= 19


def test_jina5_teacher_completes_the_training_config_as_jina5_train_does(query):
    """``jina5-teacher`` takes the training command line: the same completions, nested experiments included."""
    for words in ("experiment=abl", "debug=", "exp"):
        offered = query(f"jina5-teacher {words}", jina5.train.teacher_main)
        assert offered == query(f"jina5-train {words}") and offered
    assert "experiment=ablation/combined" in query("jina5-teacher experiment=", jina5.train.teacher_main)
