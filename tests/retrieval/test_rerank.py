"""Rerankers: the shipped learned default, its features, and the CrossEncoder adapter's loading
code exercised on a tiny BERT the test builds itself (no weights exist on these machines)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import Unavailable
from core.models import RetrievedChunk
from retrieval.rerank import LearnedReranker, Reranker
from retrieval.rerank.features import (
    FEATURE_NAMES,
    Candidate,
    bigram_overlap,
    extract_features,
    min_window,
    proximity,
    tokenize,
)
from retrieval.rerank.learned import DEFAULT_WEIGHTS, chunk_features, fit_pairwise, load_models, save_models


def chunk(i: int, text: str, title: str = "", **scores: float) -> RetrievedChunk:
    return RetrievedChunk(
        doc_id=f"d{i}",
        chunk_id=f"c{i}",
        version=1,
        chunk_index=0,
        text=text,
        title=title,
        char_start=0,
        char_end=len(text),
        score=1.0 / (i + 1),
        scores={"rrf": 1.0 / (61 + i), **scores},
    )


# ---- features ------------------------------------------------------------------------------


@pytest.mark.unit
def test_tokenize_lowercases_drops_stopwords_and_stems() -> None:
    assert tokenize("The Running of the Mice, in 2024!") == ["run", "mice", "2024"]


@pytest.mark.unit
def test_tokenize_gives_the_same_terms_when_its_word_cache_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrieval.rerank import features

    text = "The runners ran; running shoes of the runner, and the mice ran again."
    expected = tokenize(text)
    monkeypatch.setattr(features, "_TERMS_MAX", 3)
    features._terms.clear()
    for _ in range(2):  # the second pass reads what the first cached, through several clears
        assert tokenize(text) == expected == ["runner", "ran", "run", "shoe", "runner", "mice", "ran"]
        assert len(features._terms) <= 3


@pytest.mark.unit
def test_min_window_and_proximity() -> None:
    doc = ["a", "x", "b", "x", "x", "a", "b"]
    assert min_window(["a", "b"], doc) == 2
    assert min_window(["a", "zz"], doc) is None
    assert proximity(["a", "b"], doc) == pytest.approx(1.0)
    assert proximity(["a", "b"], ["a", "x", "x", "x", "b"]) < proximity(["a", "b"], ["a", "x", "b"])


@pytest.mark.unit
def test_bigram_overlap() -> None:
    assert bigram_overlap(["a", "b", "c"], ["a", "b", "x", "c"]) == pytest.approx(0.5)
    assert bigram_overlap(["a"], ["a"]) == 0.0


@pytest.mark.unit
def test_features_are_list_relative_and_impute_missing_stage_scores() -> None:
    cands = [
        Candidate("vitamin d deficiency causes rickets", "Vitamin D", dense=0.8, sparse=10.0),
        Candidate("rickets in children", dense=None, sparse=5.0),
        Candidate("unrelated text about cars", dense=0.2, sparse=None),
    ]
    x = extract_features("Does vitamin D deficiency cause rickets?", cands)
    col = {n: x[:, i] for i, n in enumerate(FEATURE_NAMES)}
    assert x.shape == (3, len(FEATURE_NAMES))
    np.testing.assert_allclose(col["dense"], [0.0, -0.6, -0.6])  # missing -> list minimum
    np.testing.assert_allclose(col["sparse"], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(col["coverage"], [1.0, 0.25, 0.0])
    assert col["title"][0] > 0 and col["title"][1] == 0
    assert col["bigram"][0] == pytest.approx(1.0)
    assert col["local_bm25"][0] == pytest.approx(1.0) and col["local_bm25"][2] == 0.0
    assert extract_features("q", []).shape == (0, len(FEATURE_NAMES))


@pytest.mark.unit
def test_fit_pairwise_learns_the_informative_feature(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    groups = []
    for _ in range(40):
        x = rng.normal(size=(20, len(FEATURE_NAMES)))
        grades = (x[:, FEATURE_NAMES.index("coverage")] > 1.0).astype(int)
        groups.append((x, grades))
    model = fit_pairwise(groups)
    assert int(np.argmax(model.weights)) == FEATURE_NAMES.index("coverage")
    save_models(tmp_path / "w.json", {"full": model, "stages": model, "text_only": model})
    again = load_models(tmp_path / "w.json")["full"]
    np.testing.assert_allclose(again.score(groups[0][0]), model.score(groups[0][0]))


@pytest.mark.unit
def test_chunk_features_are_what_training_and_reranking_share() -> None:
    chunks = [chunk(0, "vitamin d deficiency causes rickets", "Vitamin D", dense=0.8, sparse=10.0), chunk(1, "cars")]
    x, kind = chunk_features("vitamin d rickets", chunks)
    expected = extract_features(
        "vitamin d rickets",
        [Candidate("vitamin d deficiency causes rickets", "Vitamin D", dense=0.8, sparse=10.0), Candidate("cars")],
    )
    np.testing.assert_array_equal(x, expected)
    assert kind == "stages"
    vectors = [[1.0, 0.0], [0.0, 1.0]]
    assert chunk_features("vitamin d rickets", chunks, vectors=vectors)[1] == "full"
    assert chunk_features("vitamin d rickets", chunks, vectors=[[1.0, 0.0], None])[1] == "stages"  # all or none
    assert chunk_features("rickets", [chunk(0, "rickets"), chunk(1, "cars")], vectors=vectors)[1] == "text_only"
    with pytest.raises(ValueError, match="vectors"):
        chunk_features("rickets", chunks, vectors=[[1.0, 0.0]])


@pytest.mark.unit
def test_prf_is_the_cosine_to_the_centroid_of_the_two_best_candidates() -> None:
    prf = FEATURE_NAMES.index("prf")
    vectors = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]
    x = extract_features("q", [Candidate(f"text {i}", vector=v) for i, v in enumerate(vectors)])
    centroid = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)
    cos = np.array(vectors) @ centroid
    np.testing.assert_allclose(x[:, prf], cos - cos.max())
    assert int(np.argmax(x[:, prf])) == 2 and x[3, prf] == pytest.approx(-cos.max())  # unrelated: lowest
    without = extract_features("q", [Candidate(f"text {i}") for i in range(4)])
    assert not without[:, prf].any()


# ---- the default reranker ------------------------------------------------------------------


@pytest.mark.unit
def test_learned_reranker_satisfies_the_protocol_and_promotes_the_matching_chunk() -> None:
    reranker = LearnedReranker()
    assert isinstance(reranker, Reranker)
    reranker.warm_up()
    chunks = [
        chunk(0, "Quarterly revenue grew in the northern region.", dense=0.41, sparse=3.0),
        chunk(1, "Expense reports are due on Friday.", dense=0.40, sparse=2.0),
        chunk(
            2,
            "To reset your VPN password, open the portal and choose reset VPN password.",
            "VPN password reset",
            dense=0.55,
            sparse=9.0,
        ),
    ]
    out = reranker.rerank("how do I reset my VPN password", chunks)
    assert [c.chunk_id for c in out][0] == "c2"
    assert [c.score for c in out] == sorted((c.score for c in out), reverse=True)
    assert all(c.scores["rerank"] == c.score for c in out)
    assert out[0].scores["dense"] == 0.55  # earlier stage scores kept
    assert chunks[2].score == pytest.approx(1 / 3) and "rerank" not in chunks[2].scores  # input untouched
    assert len(reranker.rerank("vpn", chunks, top_k=1)) == 1
    assert reranker.rerank("vpn", []) == []


@pytest.mark.unit
def test_learned_reranker_lifts_a_chunk_like_the_top_of_the_list_when_given_vectors() -> None:
    """Two chunks equal in text and stage scores: without vectors the fused order stands; with
    them the one that resembles the two best candidates moves above the one that does not."""
    reranker = LearnedReranker()
    assert reranker.uses_vectors
    same = "Badges are required on site."
    chunks = [
        chunk(0, "Visitor badges: collect one at reception.", dense=0.62, sparse=6.0),
        chunk(1, "Lost badges are replaced by security.", dense=0.60, sparse=5.5),
        chunk(2, same, dense=0.50, sparse=4.0),
        chunk(3, same, dense=0.50, sparse=4.0),
    ]
    vectors = [[1.0, 0.0, 0.0], [0.9, 0.43589, 0.0], [0.0, 0.0, 1.0], [0.95, 0.31225, 0.0]]
    plain = [c.chunk_id for c in reranker.rerank("visitor badge", chunks)]
    assert plain.index("c2") < plain.index("c3")
    lifted = [c.chunk_id for c in reranker.rerank("visitor badge", chunks, vectors=vectors)]
    assert lifted.index("c3") < lifted.index("c2")


@pytest.mark.unit
def test_learned_reranker_works_without_stage_scores_and_is_deterministic() -> None:
    reranker = LearnedReranker()
    chunks = [
        chunk(0, "Holiday calendar for 2025 and the office closing days."),
        chunk(1, "Travel expenses are reimbursed within 30 days."),
        chunk(2, "The cafeteria opens at eight."),
        chunk(3, "Parental leave policy: employees get 16 weeks of parental leave."),
        chunk(4, "Security badges must be worn at all times."),
    ]
    first = reranker.rerank("parental leave weeks", chunks)
    assert [c.chunk_id for c in first].index("c3") < 3
    assert [c.score for c in reranker.rerank("parental leave weeks", chunks)] == [c.score for c in first]


@pytest.mark.unit
def test_learned_reranker_rejects_negative_top_k_and_bad_weights(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="top_k"):
        LearnedReranker().rerank("q", [chunk(0, "t")], top_k=-1)
    bad = tmp_path / "w.json"
    bad.write_text('{"models": {"full": {"features": ["nope"], "mean": [0], "std": [1], "weights": [1]}}}')
    with pytest.raises(ValueError, match="unknown features"):
        LearnedReranker(bad).warm_up()
    shipped = load_models(DEFAULT_WEIGHTS)
    only_full = tmp_path / "full_only.json"
    save_models(only_full, {"full": shipped["full"], "text_only": shipped["text_only"]})
    with pytest.raises(ValueError, match=r"lack models \['stages'\]"):
        LearnedReranker(only_full).warm_up()  # its full model reads `prf`: it cannot stand in


@pytest.mark.unit
def test_weights_from_before_prf_still_load_and_rank(tmp_path: Path) -> None:
    """A weights file trained before the `prf` feature (models `full` and `text_only`, `full`
    without `prf`) keeps working: its `full` model serves lists with or without vectors."""
    shipped = load_models(DEFAULT_WEIGHTS)
    old = tmp_path / "old.json"
    save_models(old, {"full": shipped["stages"], "text_only": shipped["text_only"]})
    reranker = LearnedReranker(old)
    chunks = [chunk(0, "cars", dense=0.2, sparse=1.0), chunk(1, "vpn password reset", dense=0.6, sparse=8.0)]
    for vectors in (None, [[1.0, 0.0], [0.0, 1.0]]):
        assert reranker.rerank("reset vpn password", chunks, vectors=vectors)[0].chunk_id == "c1"


# ---- CrossEncoder adapter on a tiny model --------------------------------------------------

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (
    "how do i reset my vpn password open the portal and choose expense reports are due on friday "
    "revenue grew in region quarterly"
).split()


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("tiny-ce")
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    transformers.BertForSequenceClassification(config).save_pretrained(path)
    transformers.BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True).save_pretrained(path)
    return path


@pytest.mark.integration
def test_cross_encoder_loads_a_local_model_and_scores_every_pair(tiny_cross_encoder: Path) -> None:
    from retrieval.rerank.cross_encoder import CrossEncoderReranker

    reranker = CrossEncoderReranker(str(tiny_cross_encoder), batch_size=2, max_length=64)
    assert isinstance(reranker, Reranker)
    reranker.warm_up()
    chunks = [
        chunk(0, "quarterly revenue grew in the region"),
        chunk(1, "expense reports are due on friday"),
        chunk(2, "open the portal and choose reset vpn password", "reset vpn password"),
    ]
    out = reranker.rerank("how do i reset my vpn password", chunks)
    assert sorted(c.chunk_id for c in out) == ["c0", "c1", "c2"]
    assert all(np.isfinite(c.score) and c.scores["rerank"] == c.score for c in out)
    assert [c.score for c in out] == sorted((c.score for c in out), reverse=True)
    again = reranker.rerank("how do i reset my vpn password", chunks)
    assert [c.chunk_id for c in again] == [c.chunk_id for c in out]
    np.testing.assert_allclose([c.score for c in again], [c.score for c in out], rtol=1e-5)
    assert len(reranker.rerank("vpn", chunks, top_k=2)) == 2


@pytest.mark.unit
def test_cross_encoder_refuses_a_missing_model_directory(tmp_path: Path) -> None:
    from retrieval.rerank.cross_encoder import CrossEncoderReranker

    with pytest.raises(Unavailable, match="does not exist"):
        CrossEncoderReranker(str(tmp_path / "absent")).warm_up()
    with pytest.raises(ValueError, match="batch_size"):
        CrossEncoderReranker("x", batch_size=0)
