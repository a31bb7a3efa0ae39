"""Whether a finished run was trained on the data its config reads now, before it is skipped as done.

A run directory is reused by name and config (``jina5.runs.config``); the same config can read other data
(a data file rewritten behind an unchanged path, a hub split that moved). A finished run's
``data_manifest.json`` holds the fingerprint of the data it trained on (``jina5.data.manifest``: rows and
content hash per dataset, and the digest of the files they were read from). :func:`check_same_data`
accepts a run whose input files hash as they did (no loading); otherwise it loads the mix as training would (rank 0's share of an
``hf:`` source, as in the manifest; no model, teacher or trainer) and refuses changed data with
``DataChangedError``, unless ``accept_changed_data=true`` keeps the finished run as it is (logged). A
resumed run is checked in its data module's setup instead, where the tables are loaded anyway
(``PairDataModule.setup``), so the data is hashed once per run start.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from jina5.data.manifest import ACCEPT_KEY, MANIFEST_FILE, changed_data_error, data_changes, newest_start

log = logging.getLogger(__name__)


def check_same_data(cfg: DictConfig, run_dir: Path) -> None:
    """Raise ``DataChangedError`` if the finished run in ``run_dir`` trained on other data than ``cfg.data``
    reads now (and ``cfg.accept_changed_data`` is not set); a run without ``data_manifest.json`` cannot be
    checked (a warning)."""
    path = run_dir / MANIFEST_FILE
    if not path.exists():
        log.warning("%s has no %s: the data it trained on cannot be checked", run_dir, MANIFEST_FILE)
        return
    stored = json.loads(path.read_text())
    start = newest_start(stored)
    datamodule = instantiate(cfg.data, encoder=None, teacher=None)
    if start.get("inputs_sha1") and datamodule.inputs_digest() == start["inputs_sha1"]:
        log.info("%s: the data files hash as when it trained", run_dir)
        return
    current = datamodule.fingerprint(start["datasets"], world=int(stored.get("world_size", 1)))
    changes = data_changes(start["datasets"], current)
    if not changes:
        return
    if not cfg.get(ACCEPT_KEY):
        raise changed_data_error(path, start, changes, finished=True)
    log.warning(
        "%s=true: keeping the finished run %s, trained on other data than this config reads: %s",
        ACCEPT_KEY,
        run_dir,
        "; ".join(changes),
    )
