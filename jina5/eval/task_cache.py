"""The built evaluation tasks on disk, keyed by their content: the bundled corpora are parsed and split
once per content, not on every evaluation.

    load_or_build(spec, build) -> build()'s value, from ``cache_root()/eval-tasks/<key>.pkl`` when valid

**Key.** ``key = sha256(FORMAT, spec, code)``: ``spec`` is what the caller's build reads of its config
(JSON); ``code`` is :func:`code_version`, the sha256 of the source files of the modules that parse,
split and build (:data:`CODE_MODULES`) and the versions of the libraries that parse (:data:`LIBRARIES`).

**Sources.** The entry also records every bundled data file the build located
(:func:`jina5.data.corpora.recording_reads`) with the sha256 of its bytes. A load hashes them again:
if any file changed, moved or vanished, the tasks are built again. Key and sources together make the
entry a function of the content: the config, the code and the data files.

**File.** ``MAGIC`` line, the sha256 (hex) of the payload, a newline, then the payload: a pickle of
``{"sources": {path: sha256}, "value": build()}``. The payload is unpickled only when its sha256
matches; an entry that does not parse, whose checksum or sources disagree, is rebuilt (logged with
the reason) and replaced. Writes are atomic (:mod:`jina5.atomic`): a reader sees the old entry or the
new one, and two processes building at once each write a whole entry (the last rename wins).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as md
import json
import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from jina5.assets import cache_root
from jina5.atomic import atomic_write_bytes
from jina5.data.corpora import recording_reads

log = logging.getLogger(__name__)

T = TypeVar("T")
FORMAT = 1
MAGIC = b"jina5-eval-tasks\n"
# What the built tasks are a function of, besides the config and the data files.
CODE_MODULES = (
    "jina5.assets",
    "jina5.data.io",
    "jina5.data.schema",
    "jina5.data.corpora",
    "jina5.data.splits",
    "jina5.eval.task_types",
    "jina5.eval.tasks",
    "jina5.eval.task_cache",
)
LIBRARIES = ("datasets", "numpy", "pandas", "pyyaml")


def code_version() -> str:
    """sha256 of the source bytes of :data:`CODE_MODULES` and the versions of :data:`LIBRARIES`."""
    h = hashlib.sha256()
    for name in CODE_MODULES:
        h.update(Path(importlib.import_module(name).__file__).read_bytes())
    h.update(json.dumps({lib: md.version(lib) for lib in LIBRARIES}).encode())
    return h.hexdigest()


def cache_path(spec: Any) -> Path:
    """``cache_root()/eval-tasks/<key>.pkl`` of ``spec`` (module docstring)."""
    key = json.dumps([FORMAT, spec, code_version()], sort_keys=True, default=str)
    return cache_root() / "eval-tasks" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pkl"


def _sources(files: set[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}


def _changed(sources: dict[str, str]) -> str | None:
    """The first recorded source file that is gone or whose bytes changed, or None."""
    for path, digest in sources.items():
        p = Path(path)
        if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            return path
    return None


def read_entry(path: Path) -> tuple[Any, str | None]:
    """(value, None) of a valid entry, else (None, why it cannot be used)."""
    if not path.exists():
        return None, "no entry"
    data = path.read_bytes()
    head, _, payload = data[len(MAGIC) :].partition(b"\n")
    if not data.startswith(MAGIC) or head.decode("ascii", "replace") != hashlib.sha256(payload).hexdigest():
        return None, "corrupt (bad header or checksum)"
    try:
        entry = pickle.loads(payload)
        changed = _changed(entry["sources"])
    except Exception as err:  # a checksummed payload that still fails: an entry of another layout
        return None, f"unreadable ({type(err).__name__}: {err})"
    if changed:
        return None, f"source file changed: {changed}"
    return entry["value"], None


def write_entry(path: Path, value: Any, files: set[Path]) -> None:
    payload = pickle.dumps({"sources": _sources(files), "value": value}, protocol=pickle.HIGHEST_PROTOCOL)
    atomic_write_bytes(path, MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def load_or_build(spec: Any, build: Callable[[], T], reuse: bool = True) -> T:
    """``build()``'s value from its cache entry for ``spec`` if that is valid (and ``reuse``), else built
    (recording the data files it reads) and written as the new entry."""
    path = cache_path(spec)
    if reuse:
        value, why = read_entry(path)
        if why is None:
            log.info("eval tasks: from the cache %s", path)
            return value
        if why != "no entry":
            log.warning(
                "eval tasks: the cache entry %s is not used (%s): building the tasks again", path, why
            )
    with recording_reads() as files:
        value = build()
    write_entry(path, value, files)
    log.info("eval tasks: built from %d data files, cached in %s", len(files), path)
    return value
