"""The RoPE base theta of a backbone's config: read it, and set it before the model is built.

Rotary position embeddings rotate each query/key pair of dims (2i, 2i+1) at position p by p * w_i, with

    w_i = 1 / theta^(2i / d),   i = 0 .. d/2 - 1   (d = head dim)

held in the rotary module's ``inv_freq`` buffer, which the model computes from its config once, at
construction: editing the config of a built model changes nothing. So a theta is set on the config
*before* the model is built (``Encoder(rope_theta=...)``, ``jina5.model.tiny``), or written into the saved
``config.json`` that the next load builds from (``jina5.model.io.save_encoder(rope_theta=...)``).
The paper trains with a lower theta than it serves with (small: 1M in stage 1, 500K in the long-context
step, 3.5M at inference; nano: 250K in training, 1M at inference).

Where the theta lives depends on the transformers version: ``config.rope_parameters["rope_theta"]``
(5.x; one dict per layer type when nested) or ``config.rope_theta`` (4.x).
"""

from __future__ import annotations

from transformers import PretrainedConfig


def _parameter_dicts(config: PretrainedConfig) -> list[dict]:
    """The dicts holding ``rope_theta`` in ``config.rope_parameters`` (5.x; nested per layer type or one)."""
    params = getattr(config, "rope_parameters", None)
    if not isinstance(params, dict) or not params:
        return []
    nested = [v for v in params.values() if isinstance(v, dict)]
    return nested or [params]


def has_rope(config: PretrainedConfig) -> bool:
    """Whether the backbone of ``config`` uses rotary position embeddings (Qwen3, EuroBERT; not BERT, MPNet)."""
    return bool(_parameter_dicts(config)) or getattr(config, "rope_theta", None) is not None


def rope_theta(config: PretrainedConfig) -> float | None:
    """The RoPE base theta of ``config`` (None for a backbone without RoPE)."""
    dicts = _parameter_dicts(config)
    if dicts:
        return float(dicts[0]["rope_theta"])
    theta = getattr(config, "rope_theta", None)
    return None if theta is None else float(theta)


def check_rope(config: PretrainedConfig, key: str) -> None:
    """Raise ValueError naming the config ``key`` when the backbone of ``config`` has no RoPE."""
    if not has_rope(config):
        raise ValueError(
            f"{key} is set, but the {config.model_type} backbone has no rotary position embeddings (RoPE): "
            "leave it null for this model"
        )


def set_rope_theta(config: PretrainedConfig, theta: float, key: str = "rope_theta") -> None:
    """Set the RoPE base ``theta`` in ``config`` (in place); the model built from it gets
    ``inv_freq = 1 / theta^(2i/d)``. ``key`` names the setting in the error for a backbone without RoPE."""
    check_rope(config, key)
    if not theta > 0:
        raise ValueError(f"{key}={theta}: the RoPE base must be > 0")
    dicts = _parameter_dicts(config)
    for params in dicts:
        params["rope_theta"] = float(theta)
    if not dicts:
        config.rope_theta = float(theta)
