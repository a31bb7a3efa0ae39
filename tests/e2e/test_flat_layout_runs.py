"""Run directories written by the flat layout (``jina5/<module>.py``, before the packages) keep working:
their ``config.yaml`` names ``_target_: jina5.module.EmbeddingModule`` and the like, which the reuse check
reads with today's module paths, and their ``last.ckpt`` resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import LossRecorder, run_cfg
from hydra.core.hydra_config import HydraConfig
from jina5.conf import compose
from omegaconf import OmegaConf, open_dict

from jina5.runs.config import FLAT_LAYOUT_MODULES, check_same_run, config_changes, current_targets
from jina5.train import train

ROOT = Path(__file__).resolve().parents[2]
# the config.yaml of `python -m jina5.train experiment=ablation/pure_distill trainer.max_steps=20
# trainer.val_check_interval=10`, written by the flat layout's code (before data.sample_seed existed)
FLAT_CONFIG = ROOT / "tests" / "golden" / "flat_layout" / "pure_distill-config.yaml"


def _as_flat_layout(tree):
    """``tree`` with today's ``_target_`` module paths written as the flat layout named them."""
    back = {new: old for old, new in FLAT_LAYOUT_MODULES.items()}
    if isinstance(tree, dict):
        out = {k: _as_flat_layout(v) for k, v in tree.items()}
        module, _, name = str(out.get("_target_", "")).rpartition(".")
        if module in back:
            out["_target_"] = f"{back[module]}.{name}"
        return out
    return [_as_flat_layout(v) for v in tree] if isinstance(tree, list) else tree


def test_a_flat_layout_config_is_the_same_run_as_its_composition_today(tmp_path):
    cfg = compose(
        [
            "experiment=ablation/pure_distill",
            "trainer.max_steps=20",
            "trainer.val_check_interval=10",
            "scheduler.warmup_steps=40",  # the experiment's warmup when the golden was written
            f"paths.output_root={tmp_path}",
        ]
    )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "runs" / cfg.run_name)
        del cfg.hydra
    stored = OmegaConf.to_container(OmegaConf.load(FLAT_CONFIG), resolve=False)
    assert stored["module"]["_target_"] == "jina5.module.EmbeddingModule"  # the golden is a flat-layout one
    # the golden ran under `precision: auto` on a bf16 CPU; the tests run fp32 (conftest)
    for key in ("precision", "teacher.precision", "trainer.precision"):
        OmegaConf.update(cfg, key, OmegaConf.select(OmegaConf.create(stored), key))
    current = OmegaConf.to_container(cfg, resolve=True)
    as_written = [c.split(":")[0] for c in config_changes(stored, current)]
    assert as_written == ["module._target_", "student._target_", "teacher._target_"]
    assert config_changes(current_targets(stored), current) == []
    run_dir = tmp_path / "runs" / cfg.run_name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(FLAT_CONFIG.read_text())
    check_same_run(cfg, run_dir)


def test_a_flat_layout_run_resumes_from_its_last_ckpt(tmp_path):
    common = ["trainer.log_every_n_steps=1", "trainer.val_check_interval=2", "scheduler.total_steps=4"]
    train(run_cfg(tmp_path, *common, "trainer.max_steps=2"))
    run_dir = tmp_path / "runs" / "default-seed0"
    saved = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=False)
    flat = _as_flat_layout(saved)
    assert flat["module"]["_target_"] == "jina5.module.EmbeddingModule"
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(flat))
    recorder = LossRecorder()
    summary = train(run_cfg(tmp_path, *common, "trainer.max_steps=4"), callbacks=[recorder])
    assert summary["steps"] == 4 and sorted(recorder.losses) == [3, 4]  # resumed at step 2, not retrained
    with pytest.raises(ValueError, match=r"optimizer\.lr"):  # the check still refuses a real change
        train(run_cfg(tmp_path, *common, "trainer.max_steps=6", "optimizer.lr=3e-4"))
