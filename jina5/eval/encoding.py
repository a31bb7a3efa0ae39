"""How the suite encodes: each text once per model view, routed to the task adapter that scores it.

**Memo.** :class:`MemoEncode` encodes each distinct (prompt, text) once per suite run at full dim in
float32 (the BBC test articles serve retrieval, classification and clustering; the 50 Lee documents
serve 1,225 STS pairs), and the evaluators derive every (dim, precision) setting from those vectors
(see :mod:`jina5.eval.metrics`). The suite hands it every text of the tasks it will run before the
first one (:meth:`MemoEncode.prefetch`): one encode call per prompt, so the model's length-sorted
batches span all tasks (the default suite's batches of 64 then pad 3% of their tokens instead of 20%
when each task encodes its own texts). A model without a prompt the evaluators ask for (``query`` /
``document``) encodes that side without a prefix (logged once), so a plain hub model needs no prompt
config.

**Adapters.** :class:`AdapterRouter` picks the encoder view of each task type (the type's adapter,
or the model with adapters disabled), one memo per view.

**Fingerprint.** :func:`model_fingerprint`: sha256 of the backbone config, the encoding settings
incl. prompts and max length, and every weight: the model half of the suite's cache key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from jina5.eval.metrics import truncate
from jina5.model.io import VOLATILE_CONFIG, content_fingerprint
from jina5.model.quantize import quantize

log = logging.getLogger(__name__)


class MemoEncode:
    """``encode(texts, prompt=None, dim=None, precision="float32") -> (N, dim)``, each distinct
    (prompt, text) computed once at full dim, float32 (then truncated / quantized on request).

    ``model`` is a ``Encoder`` (anything with ``encode(texts, prompt=, batch_size=,
    progress=)``; its ``prompts`` dict, if any, decides which prompts exist) or a plain callable
    ``fn(texts, prompt=None) -> (N, D)``. Counts ``texts_encoded`` and ``seconds`` spent encoding.
    """

    def __init__(self, model: Any, batch_size: int, progress: bool = False) -> None:
        self.model = model
        self.batch_size = batch_size
        self.progress = progress
        self.threads = torch.get_num_threads()  # the model encodes with these, even inside run_suite's limit
        self.texts_encoded = 0
        self.seconds = 0.0
        self._memo: dict[tuple[str | None, str], np.ndarray] = {}
        self._warned: set[str] = set()

    def _prompt(self, prompt: str | None) -> str | None:
        prompts = getattr(self.model, "prompts", None)
        if prompt is None or prompts is None or prompt in prompts:
            return prompt
        if prompt not in self._warned:
            self._warned.add(prompt)
            log.warning(
                "the model has no %r prompt (prompts: %s): encoding without a prefix", prompt, sorted(prompts)
            )
        return None

    def _encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        with threadpool_limits(limits=self.threads):
            if hasattr(self.model, "encode"):
                return self.model.encode(
                    texts,
                    prompt=prompt,
                    batch_size=self.batch_size,
                    progress=self.progress and len(texts) >= 256,
                )
            return self.model(texts, prompt=prompt)

    def prefetch(self, texts: Sequence[str], prompt: str | None = None) -> None:
        """Encode the distinct ``texts`` not memoised yet under ``prompt``, in one call to the model."""
        prompt = self._prompt(prompt)
        todo = list(dict.fromkeys(t for t in texts if (prompt, t) not in self._memo))
        if not todo:
            return
        start = time.perf_counter()
        emb = np.asarray(self._encode(todo, prompt), dtype=np.float32)
        self.seconds += time.perf_counter() - start
        if emb.shape[0] != len(todo) or emb.ndim != 2:
            raise ValueError(f"the model returned shape {emb.shape} for {len(todo)} texts")
        self.texts_encoded += len(todo)
        self._memo.update({(prompt, t): e for t, e in zip(todo, emb, strict=True)})

    def __call__(
        self,
        texts: Sequence[str],
        prompt: str | None = None,
        dim: int | None = None,
        precision: str = "float32",
    ) -> np.ndarray:
        self.prefetch(texts, prompt)
        prompt = self._prompt(prompt)
        out = np.stack([self._memo[(prompt, t)] for t in texts]) if texts else np.zeros((0, 0), np.float32)
        return quantize(truncate(out, dim), precision)


class BaseView:
    """An encoder with task adapters, encoding with every adapter disabled (the stage-1 model)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder

    @property
    def prompts(self) -> dict[str, str]:
        return self.encoder.prompts_for()

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode(self, texts: Sequence[str], prompt: str | None = None, **kwargs: Any) -> np.ndarray:
        with self.encoder.adapters_disabled():
            return self.encoder.encode(texts, prompt=prompt, **kwargs)


class AdapterRouter:
    """Which encoder view scores a task type: for a model with task adapters (``model.adapters``),
    ``model.for_task(jina5.model.adapters.EVAL_TASK_TO_ADAPTER[type])`` when that adapter exists, else the
    model with adapters disabled (logged once); for any other model, the model itself. Each view has
    its own :class:`MemoEncode` (the same text encodes differently under different adapters)."""

    def __init__(self, model: Any, batch_size: int, progress: bool, enabled: bool) -> None:
        self.model = model
        self.adapters = list(getattr(model, "adapters", None) or []) if enabled else []
        self._memos: dict[str | None, MemoEncode] = {}
        self._kw = {"batch_size": batch_size, "progress": progress}

    def route(self, task_type: str) -> tuple[MemoEncode, str | None]:
        """(encode function, adapter name or None) for ``task_type``."""
        name: str | None = None
        if self.adapters:
            from jina5.model.adapters import adapter_for_eval_task  # imports peft: only for adapter models

            wanted = adapter_for_eval_task(task_type)
            name = wanted if wanted in self.adapters else None
            if name is None and None not in self._memos:  # say it once
                log.info(
                    "no %r adapter (adapters: %s): %s tasks use the base model",
                    wanted,
                    self.adapters,
                    task_type,
                )
        if name not in self._memos:
            view = (
                self.model
                if not self.adapters
                else (self.model.for_task(name) if name else BaseView(self.model))
            )
            self._memos[name] = MemoEncode(view, **self._kw)
        return self._memos[name], name

    @property
    def texts_encoded(self) -> int:
        return sum(m.texts_encoded for m in self._memos.values())

    @property
    def seconds(self) -> float:
        return sum(m.seconds for m in self._memos.values())


def model_fingerprint(encoder: Any) -> str:
    """``content_fingerprint`` with the prompts included (they change every score) and the
    ``architectures`` list ignored (``save_pretrained`` rewrites it to the class that loaded the weights)."""
    return content_fingerprint(encoder, skip_config=(*VOLATILE_CONFIG, "architectures"))


def model_dim(encode: MemoEncode, model: Any) -> int:
    """The model's full dim: its ``dim`` attribute, else the width of one probe encoding."""
    dim = getattr(model, "dim", None)
    if isinstance(dim, int):
        return dim
    return int(np.asarray(encode(["dimension probe"], prompt=None)).shape[-1])
