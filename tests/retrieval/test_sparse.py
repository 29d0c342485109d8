from __future__ import annotations

import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from rank_bm25 import BM25Okapi

from core.models import AccessScope, IndexPoint, IndexQuery, chunk_id
from core.protocols import SparseEncoder
from retrieval.index.edge import EdgeIndex
from retrieval.sparse import Bm25SparseEncoder, Bm25Tokenizer, term_id

SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "data" / "scifact"
SCOPE = AccessScope("t", ("tenant:*",))
tok = Bm25Tokenizer()


# ---- tokenizer ------------------------------------------------------------------------------


@pytest.mark.unit
def test_stopwords_go_and_inflections_share_a_stem() -> None:
    assert tok.tokenize("The cat is running and it runs") == ["cat", "run", "run"]
    assert tok.tokenize("Running") == tok.tokenize("runs") == ["run"]
    assert tok.tokenize("I don't know what they've done") == ["know", "done"]


@pytest.mark.unit
def test_numbers_and_identifiers_are_kept() -> None:
    assert tok.tokenize("Invoice 2024-117 due in 30 days") == ["invoic", "2024", "117", "due", "30", "day"]
    assert tok.tokenize("error_code E42") == ["error", "code", "e42"]


@pytest.mark.unit
def test_accents_fold_and_case_folds() -> None:
    assert tok.tokenize("Café") == tok.tokenize("cafe") == ["cafe"]
    assert tok.tokenize("ZÜRICH Straße") == tok.tokenize("zurich strasse")


@pytest.mark.unit
def test_non_latin_words_are_kept_whole() -> None:
    assert tok.tokenize("Привет, Москва!") == ["привет", "москва"]
    assert tok.tokenize("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]  # vowel signs do not split words
    assert tok.tokenize("東京タワー") == ["東京", "京タ", "タワ", "ワー"]  # CJK runs -> bigrams
    assert "東京" in tok.tokenize("東京")


# ---- encoder --------------------------------------------------------------------------------


@pytest.mark.unit
def test_encoder_meets_the_protocol_and_weights_are_bm25_tf() -> None:
    enc = Bm25SparseEncoder(k1=1.2, b=0.75, avg_doc_len=4)
    assert isinstance(enc, SparseEncoder)
    doc = enc.encode_document("apple apple banana cherry")  # dl = 4 = avgdl
    weights = dict(zip(doc.indices, doc.values, strict=True))
    assert weights[term_id("appl")] == pytest.approx(2 * 2.2 / (2 + 1.2))
    assert weights[term_id("banana")] == pytest.approx(2.2 / (1 + 1.2))
    assert doc.indices == sorted(doc.indices)
    query = enc.encode_query("apple apples banana")
    assert sorted(query.indices) == sorted({term_id("appl"), term_id("banana")})
    assert query.values == [1.0, 1.0]
    assert enc.encode_document("") == enc.encode_query("the of") == type(doc)([], [])


@pytest.mark.unit
def test_longer_documents_get_lower_term_weights() -> None:
    enc = Bm25SparseEncoder(avg_doc_len=5)
    short = enc.encode_document("budget")
    long = enc.encode_document("budget " + " ".join(f"word{i}" for i in range(20)))
    assert short.values[0] > long.values[long.indices.index(term_id("budget"))]


@pytest.mark.unit
def test_term_ids_are_stable_across_processes_and_fit_u32() -> None:
    # Pinned: changing the hash silently breaks every index built before the change.
    assert term_id("revenu") == 849703162
    assert term_id("москва") == 774184222
    code = "from retrieval.sparse import term_id; print(term_id('revenu'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == 849703162
    assert all(0 <= term_id(w) < 2**32 for w in ("a", "b" * 60, "東京"))


@pytest.mark.unit
def test_invalid_parameters_are_refused() -> None:
    for kwargs in ({"k1": -1.0}, {"b": 1.5}, {"avg_doc_len": 0.0}):
        with pytest.raises(ValueError):
            Bm25SparseEncoder(**kwargs)  # type: ignore[arg-type]


# ---- parity with a reference BM25 ----------------------------------------------------------

CORPUS = [
    "The quarterly revenue report shows growth in the European market.",
    "Employees may carry over five vacation days into the next year.",
    "Password resets require verification through the corporate identity provider.",
    "The data retention policy keeps customer records for seven years.",
    "Expense reports must be submitted within thirty days of purchase.",
    "Our support team answers customer tickets within one business day.",
    "The European office moved to a new building in Berlin last spring.",
    "Revenue recognition follows the delivery of contracted services.",
    "New employees receive laptops configured by the IT department.",
    "Security incidents must be reported to the security team immediately.",
    "The VPN client must be updated before connecting to internal systems.",
    "Customer churn decreased after the loyalty program launched.",
    "Parental leave is sixteen weeks for all full-time employees.",
    "Travel bookings go through the approved travel agency portal.",
    "The board approved the annual budget for research and development.",
    "Quarterly targets for the sales team were exceeded in Asia.",
    "Backups of production databases run nightly and are tested monthly.",
    "Invoices from suppliers are paid within forty-five days.",
    "Remote work is allowed up to three days per week.",
    "The code review checklist covers tests, security and documentation.",
    "Onboarding includes a week of training on internal tools.",
    "Customer data may only be exported with written approval.",
    "The mobile app release added offline mode and dark mode.",
    "Server outages are communicated on the public status page.",
    "Performance reviews happen twice a year with each manager.",
    "The cafeteria menu changes weekly and includes vegetarian options.",
    "Encryption keys are rotated every ninety days by the platform team.",
    "The marketing budget was reallocated towards online campaigns.",
    "Contract renewals are handled by the legal department.",
    "Vacation requests need manager approval two weeks in advance.",
    "Sales commissions are paid quarterly after revenue is recognised.",
    "The incident response runbook lists escalation contacts.",
    "Laptops must use full disk encryption and automatic updates.",
    "The research team published a paper on retrieval evaluation.",
    "Customer satisfaction scores improved in the support survey.",
    "Office badges must be worn visibly at all times.",
    "The annual company retreat takes place in the mountains.",
    "Database migrations are reviewed by two engineers before release.",
    "Training budget per employee is one thousand euros per year.",
    "Security training is mandatory for all employees every year.",
]
QUERIES = [
    "quarterly revenue",
    "vacation days employees",
    "security incident reporting",
    "customer data export approval",
    "database backups",
    "encryption keys rotation",
    "European office",
    "expense reports deadline",
    "remote work policy",
    "training budget",
    "support tickets customer",
]


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[EdgeIndex]:
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path
    idx = EdgeIndex(base / "shard", dense_dim=4)
    idx.warm_up()
    yield idx
    idx.close()
    shutil.rmtree(base, ignore_errors=True)


def _rank_both(edge: EdgeIndex, docs: list[str], queries: list[str]) -> list[tuple[list[int], list[int]]]:
    """Rankings (doc positions, best first) by the engine and by rank-bm25 on the same tokens."""
    tokens = [tok.tokenize(d) for d in docs]
    enc = Bm25SparseEncoder(avg_doc_len=statistics.mean(len(t) for t in tokens), tokenizer=tok)
    edge.upsert(
        [
            IndexPoint(
                chunk_id("t", "d", 1, i),
                [1.0, 0.0, 0.0, 0.0],
                enc.encode_document(d),
                {
                    "tenant_id": "t",
                    "acl": ["tenant:*"],
                    "chunk_index": i,
                },
            )
            for i, d in enumerate(docs)
        ]
    )
    reference = BM25Okapi(tokens, k1=1.2, b=0.75)
    out = []
    for query in queries:
        hits = edge.query(IndexQuery(scope=SCOPE, sparse=enc.encode_query(query), limit=5))
        ours = [h.payload["chunk_index"] for h in hits]
        scores = reference.get_scores(tok.tokenize(query))
        theirs = [i for i in sorted(range(len(docs)), key=lambda i: -scores[i])[:5] if scores[i] > 0]
        out.append((ours, theirs))
    return out


def _assert_agreement(pairs: list[tuple[list[int], list[int]]]) -> None:
    top1 = sum(ours[0] == theirs[0] for ours, theirs in pairs) / len(pairs)
    overlap = statistics.mean(len(set(ours) & set(theirs)) / len(theirs) for ours, theirs in pairs)
    assert top1 >= 0.8, pairs
    assert overlap >= 0.8, pairs


@pytest.mark.integration
def test_engine_bm25_agrees_with_rank_bm25_on_a_small_corpus(edge: EdgeIndex) -> None:
    _assert_agreement(_rank_both(edge, CORPUS, QUERIES))


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").exists(), reason="shared SciFact data not present")
def test_engine_bm25_agrees_with_rank_bm25_on_scifact(edge: EdgeIndex) -> None:
    corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open(encoding="utf-8")]
    sample = random.Random(7).sample(corpus, 500)
    queries = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open(encoding="utf-8")]
    docs = [f"{d['title']} {d['text']}" for d in sample]
    _assert_agreement(_rank_both(edge, docs, random.Random(7).sample(queries, 20)))
