"""The cross-encoder's step-0 scores are the MiniLM bi-encoder cosine; save -> load scores identically; a tampered
run and an item outside the catalogue are refused."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.errors import ManifestMismatchError, RecsysError
from recsys.reranker.config import CrossEncoderArguments, default_base_model
from recsys.reranker.model import CrossEncoder

from .conftest import FAST


def test_step_zero_score_is_the_bi_encoder_cosine(demo_split):
    from sentence_transformers import SentenceTransformer

    data = demo_split.train
    model = CrossEncoder(CrossEncoderArguments(**FAST)).index_catalogue(data.items)
    histories = [data.sequences.row(u) for u in range(12)]
    case = np.repeat(np.arange(12), 5)
    item = np.random.default_rng(0).integers(data.n_items, size=len(case))
    scores = model.score(histories, case, item)

    st = SentenceTransformer(default_base_model(), device="cpu")
    st.max_seq_length = FAST["max_length"]
    users = st.encode(model.user_texts(histories), normalize_embeddings=True)
    items = st.encode(model.render_items(data.items), normalize_embeddings=True)
    cosine = np.einsum("ij,ij->i", users[case], items[item])
    assert model.user_texts(histories)[0].startswith("Recently: ")
    np.testing.assert_allclose(scores, cosine, atol=1e-5)
    assert scores.std() > 0.02  # real texts, not a constant


def test_save_load_scores_identically_and_refuses_tampering(trained, demo_split, tmp_path):
    histories = [demo_split.train.sequences.row(u) for u in range(5)]
    case, item = np.repeat(np.arange(5), 4), np.tile(np.arange(4), 5)
    before = trained.score(histories, case, item)
    trained.save(tmp_path / "run")
    loaded = CrossEncoder.load(tmp_path / "run")
    np.testing.assert_array_equal(loaded.score(histories, case, item), before)
    assert loaded.data_fingerprint == trained.data_fingerprint and loaded.history == trained.history
    (tmp_path / "run" / "catalogue.npz").write_bytes(b"not the vectors")
    with pytest.raises(ManifestMismatchError, match="catalogue.npz"):
        CrossEncoder.load(tmp_path / "run")


def test_item_outside_the_catalogue_is_refused(trained, demo_split):
    with pytest.raises(RecsysError, match="outside the cross-encoder's catalogue"):
        trained.score([demo_split.train.sequences.row(0)], np.array([0]), np.array([demo_split.train.n_items]))


def test_bad_settings_name_the_field():
    from recsys.settings import SettingsError

    with pytest.raises(SettingsError, match="negatives"):
        CrossEncoderArguments.from_dict({"negatives": 60, "hard_pool": 50})
    with pytest.raises(SettingsError, match="unknown"):
        CrossEncoderArguments.from_dict({"retrieval_weight": 1.0})
