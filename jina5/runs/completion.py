"""Shell completion of nested config-group values, on top of Hydra's own (``-sc query=<shell>``).

Hydra lists a group's options one folder deep: ``experiment=<TAB>`` offers nothing, because every
experiment sits in a sub-folder (``conf/experiment/ablation/combined.yaml``), and ``exp<TAB>``
offers ``experiment/``, which leads to ``experiment/ablation=combined``, an override Hydra then refuses.
For a *nested group* (a group of the primary config's defaults list whose folder holds sub-folders),
:func:`complete` adds every option path (``experiment=ablation/combined``) that extends the word being
completed, and turns ``experiment/`` into ``experiment=``. Everything else is Hydra's answer unchanged.

    eval "$(jina5-train -sc install=bash)"      # then: jina5-train experiment=abl<TAB>
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from jina5.conf import CONF_DIR

QUERY_PREFIX = "query="


def nested_groups(conf_dir: Path, config_name: str) -> list[str]:
    """Groups chosen in ``<conf_dir>/<config_name>.yaml``'s defaults list whose folder has sub-folders."""
    defaults = yaml.safe_load((conf_dir / f"{config_name}.yaml").read_text()).get("defaults") or []
    groups = [next(iter(entry)) for entry in defaults if isinstance(entry, dict) and len(entry) == 1]
    return [
        g for g in groups if (conf_dir / g).is_dir() and any(p.is_dir() for p in (conf_dir / g).iterdir())
    ]


def group_options(conf_dir: Path, group: str) -> list[str]:
    """Every option of ``group``, sub-folders included: ``ablation/combined`` for
    ``<conf_dir>/<group>/ablation/combined.yaml`` (sorted, ``/``-separated)."""
    root = conf_dir / group
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def word_being_completed(comp_line: str) -> str:
    """The last word of the command line (``""`` when the line ends with a space: a new word).

    The line's first words (``jina5-train``, ``python -m jina5.train``) are never it in practice: Hydra
    asks only once the program is named."""
    return "" if not comp_line.strip() or comp_line[-1].isspace() else comp_line.split()[-1]


def complete(hydra_choices: Sequence[str], word: str, conf_dir: Path, config_name: str) -> list[str]:
    """Hydra's completions ``hydra_choices`` of ``word``, with the nested groups' values (module
    docstring): ``[+]group=<option path>`` for each option extending ``word``, ``group/`` -> ``group=``."""
    groups = nested_groups(conf_dir, config_name)
    out = [c[:-1] + "=" if c.endswith("/") and c.lstrip("+~")[:-1] in groups else c for c in hydra_choices]
    prefix = word[0] if word[:1] in ("+", "~") else ""
    for group in groups:
        key = f"{group}="
        if word[len(prefix) :].startswith(key):
            out += [
                f"{prefix}{key}{option}"
                for option in group_options(conf_dir, group)
                if f"{prefix}{key}{option}".startswith(word)
            ]
    return sorted(set(out))


def run_with_nested_completion(hydra_main: Callable[[], None], config_name: str) -> None:
    """Run ``hydra_main`` (a ``@hydra.main`` function, which reads ``sys.argv``); for a completion query
    (``-sc query=<shell>``) print Hydra's answer extended by :func:`complete` instead of Hydra's alone."""
    argv = sys.argv[1:]
    shell = next((a[len(QUERY_PREFIX) :] for a in argv if a.startswith(QUERY_PREFIX)), None)
    if "-sc" not in argv and "--shell-completion" not in argv or shell is None:
        hydra_main()
        return
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        hydra_main()
    choices = captured.getvalue().split()
    word = word_being_completed(os.environ.get("COMP_LINE", ""))
    separator = "\n" if shell == "fish" else " "
    print(separator.join(complete(choices, word, CONF_DIR, config_name)))
