"""The languages of a training dataset, as ISO 639 codes (the data manifest's ``languages``, the model
card's ``language``).

They are read from the ``language`` column of the dataset's rows (``jina5.data.schema``): the bundled
corpora fill it (``en``; parlspeech ``de`` / ``es`` / ...; chatterbot its directory names, ``english``,
``german``, ...), a source's rows carry it where ``columns`` maps a column to ``language``, and
``DatasetSpec.language`` (or ``data.language``) fills the rows of a source that carry none. A value is
kept as it is when it looks like a code (``en``, ``fil``, ``pt-BR``), becomes its code(s) when it is a name
of :data:`LANGUAGE_NAMES`, and is kept with a warning otherwise; an empty one means unknown.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

log = logging.getLogger(__name__)

LANGUAGE_NAMES: dict[str, tuple[str, ...]] = {  # the chatterbot corpus's language directories
    "bengali": ("bn",),
    "chinese": ("zh",),
    "dutch": ("nl",),
    "english": ("en",),
    "french": ("fr",),
    "german": ("de",),
    "hebrew": ("he",),
    "hindi": ("hi",),
    "hinglish": ("hi", "en"),  # Hindi-English code-mixing
    "indonesian": ("id",),
    "italian": ("it",),
    "japanese": ("ja",),
    "korean": ("ko",),
    "marathi": ("mr",),
    "oriya": ("or",),
    "persian": ("fa",),
    "portuguese": ("pt",),
    "russian": ("ru",),
    "spanish": ("es",),
    "swedish": ("sv",),
    "tamil": ("ta",),
    "telugu": ("te",),
    "thai": ("th",),
    "traditionalchinese": ("zh",),
    "turkish": ("tr",),
    "ukrainian": ("uk",),
    "urdu": ("ur",),
    "yoruba": ("yo",),
}
_CODE = re.compile(r"[a-z]{2,3}([-_][a-z0-9]{2,8})*")


def language_codes(values: Iterable[str | None], dataset: str) -> list[str]:
    """The sorted distinct codes of a dataset's row languages ``values`` (module docstring)."""
    codes: set[str] = set()
    for value in values:
        value = (value or "").strip()
        if not value:
            continue
        name = value.lower()
        if name in LANGUAGE_NAMES:
            codes.update(LANGUAGE_NAMES[name])
        elif _CODE.fullmatch(name):
            codes.add(value)
        else:
            log.warning(
                "dataset %r: row language %r is neither an ISO 639 code nor a known name "
                "(jina5.data.languages.LANGUAGE_NAMES); kept as it is in the data manifest and model card",
                dataset,
                value,
            )
            codes.add(value)
    return sorted(codes)
