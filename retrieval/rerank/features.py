"""Cheap (query, candidate) features for the default learned reranker.

Everything here is a pure function of the query text, the candidate texts, the per-stage scores
the retriever already has and (when the index hands them over) the candidates' stored dense
vectors, so reranking costs milliseconds and needs no model. Features are
computed *within one candidate list* (normalised against the list, IDF from the list): a reranker
only has to order the candidates it is given, and list-relative values transfer between corpora
where raw BM25 magnitudes do not.

The tokenizer (lowercase, \\w+, English stopwords, Snowball stemming) matches the sparse side's
choice so that "a query term is present" means the same thing to BM25 and to these features.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import snowballstemmer

FloatArray = npt.NDArray[np.float64]

FEATURE_NAMES: tuple[str, ...] = (
    "dense",  # cosine minus the list's best cosine
    "sparse",  # BM25 divided by the list's best BM25
    "fused_rank",  # 1 / log2(rank + 2) of the incoming (fused) order
    "coverage",  # fraction of distinct query terms present
    "idf_coverage",  # the same, weighted by IDF within the list
    "bigram",  # fraction of query bigrams present as adjacent terms
    "proximity",  # tightness of the shortest window holding every matched term
    "title",  # IDF-weighted fraction of query terms in the title
    "local_bm25",  # BM25 with the candidate list as the collection, / list max
    "length",  # log(1 + tokens)
    "prf",  # cosine to the centroid of the two best incoming candidates' vectors, minus the list max
)
PRF_DEPTH = 2  # how many of the best incoming candidates make the feedback centroid

# The common NLTK / Lucene union: words too frequent to say anything about relevance.
ENGLISH_STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all am an and any are aren as at be because been before being
    below between both but by can cannot could couldn did didn do does doesn doing don down during each
    few for from further had hadn has hasn have haven having he her here hers herself him himself his
    how i if in into is isn it its itself just ll me more most mustn my myself no nor not now of off on
    once only or other ought our ours ourselves out over own re s same shan she should shouldn so some
    such t than that the their theirs them themselves then there these they this those through to too
    under until up very was wasn we were weren what when where which while who whom why will with won
    would wouldn you your yours yourself yourselves d m o y ve
    """.split()
)

_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
_WORD = re.compile(r"\w+")
_STEMMER = snowballstemmer.stemmer("english")


_TERMS_MAX = 200_000
# lowercased word -> its term ("" for a stopword). A plain dict read per word: tokenizing the 30
# candidates of a rerank is most of what the features cost, and an lru_cache call per word was
# a third of that. Cleared when full; the vocabulary of a corpus fits many times over.
_terms: dict[str, str] = {}


def _term(word: str) -> str:
    if len(_terms) >= _TERMS_MAX:
        _terms.clear()
    term = _terms[word] = "" if word in ENGLISH_STOPWORDS else str(_STEMMER.stemWord(word))
    return term


def tokenize(text: str) -> list[str]:
    """Lowercased \\w+ words, English stopwords dropped, Snowball-stemmed."""
    known = _terms.get
    terms = [known(w) or (_term(w) if w not in _terms else "") for w in _WORD.findall(text.lower())]
    return [t for t in terms if t]


@dataclass(frozen=True)
class Candidate:
    """What the features need to know about one retrieved chunk. Missing stage scores are None:
    a chunk found only by the sparse list has no dense score, and vice versa."""

    text: str
    title: str = ""
    dense: float | None = None
    sparse: float | None = None
    vector: Sequence[float] | None = None  # the stored dense vector (unit length)


def _impute(values: Sequence[float | None]) -> FloatArray:
    """Missing stage scores take the list minimum: the chunk was below that stage's cut-off."""
    present = [v for v in values if v is not None]
    floor = min(present) if present else 0.0
    return np.array([floor if v is None else v for v in values], dtype=np.float64)


def _ratio_to_max(values: FloatArray) -> FloatArray:
    top = float(values.max()) if len(values) else 0.0
    return values / top if top > 0 else np.zeros_like(values)


def _idf(docs: Sequence[Set[str]], terms: Iterable[str]) -> dict[str, float]:
    """BM25-style IDF of `terms` with the candidate list (each doc's set of terms) as the
    collection, floored at a small positive value so a term present everywhere still counts a
    little. Terms in no document are left out."""
    n = len(docs)
    df = {t: sum(t in d for d in docs) for t in terms}
    return {t: max(math.log((n - c + 0.5) / (c + 0.5) + 1.0), 0.01) for t, c in df.items() if c}


def bigram_overlap(query_terms: Sequence[str], doc_terms: Sequence[str]) -> float:
    bigrams = set(zip(query_terms, query_terms[1:], strict=False))
    if not bigrams:
        return 0.0
    present = set(zip(doc_terms, doc_terms[1:], strict=False))
    return len(bigrams & present) / len(bigrams)


def min_window(query_terms: Sequence[str], doc_terms: Sequence[str]) -> int | None:
    """Length of the shortest span of `doc_terms` that holds every query term present in the
    document; None when fewer than two distinct query terms are present."""
    wanted = set(query_terms) & set(doc_terms)
    if len(wanted) < 2:
        return None
    counts: Counter[str] = Counter()
    have = 0
    best: int | None = None
    left = 0
    for right, term in enumerate(doc_terms):
        if term in wanted:
            counts[term] += 1
            if counts[term] == 1:
                have += 1
        while have == len(wanted):
            span = right - left + 1
            best = span if best is None or span < best else best
            gone = doc_terms[left]
            if gone in wanted:
                counts[gone] -= 1
                if counts[gone] == 0:
                    have -= 1
            left += 1
    return best


def proximity(query_terms: Sequence[str], doc_terms: Sequence[str]) -> float:
    """1 when matched terms sit side by side, falling towards 0 as they spread out."""
    window = min_window(query_terms, doc_terms)
    if window is None:
        return 0.0
    matched = len(set(query_terms) & set(doc_terms))
    return 1.0 / (1.0 + math.log1p(window - matched))


def feedback_similarity(vectors: FloatArray, depth: int = PRF_DEPTH) -> FloatArray:
    """Dense pseudo-relevance feedback: each candidate's cosine to the normalised centroid of the
    `depth` best incoming candidates, minus the list's highest. A relevant chunk the query vector
    alone placed low often resembles the top of the list more than the query itself."""
    centroid = vectors[:depth].mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    if norm < 1e-12:
        return np.zeros(len(vectors))
    sims: FloatArray = vectors @ (centroid / norm)
    out: FloatArray = sims - sims.max()
    return out


def _bm25(query_terms: Sequence[str], docs: Sequence[Sequence[str]], idf: Mapping[str, float]) -> FloatArray:
    k1, b = 1.2, 0.75
    avg = (sum(len(d) for d in docs) / len(docs)) or 1.0
    out = np.zeros(len(docs), dtype=np.float64)
    for i, d in enumerate(docs):
        norm = k1 * (1 - b + b * len(d) / avg)
        tf = {t: d.count(t) for t in query_terms if t in idf}  # idf holds the terms some doc has
        out[i] = sum(idf[t] * c * (k1 + 1) / (c + norm) for t, c in tf.items() if c)
    return out


def extract_features(query: str, candidates: Sequence[Candidate]) -> FloatArray:
    """Feature matrix (len(candidates), len(FEATURE_NAMES)); candidates in their incoming order."""
    n = len(candidates)
    out = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float64)
    if n == 0:
        return out
    q_seq = tokenize(query)
    q_terms = list(dict.fromkeys(q_seq))
    docs = [tokenize(c.text) for c in candidates]
    doc_sets = [set(d) for d in docs]
    titles = [set(tokenize(c.title)) for c in candidates]
    idf = _idf(doc_sets, q_terms)
    q_idf = {t: idf.get(t, math.log(n + 1.0)) for t in q_terms}
    q_mass = sum(q_idf.values()) or 1.0

    col = _COLUMN
    dense = _impute([c.dense for c in candidates])
    out[:, col["dense"]] = dense - dense.max()
    out[:, col["sparse"]] = _ratio_to_max(_impute([c.sparse for c in candidates]))
    out[:, col["fused_rank"]] = 1.0 / np.log2(np.arange(n, dtype=np.float64) + 2.0)
    out[:, col["local_bm25"]] = _ratio_to_max(_bm25(q_terms, docs, idf))
    for i, (d, present) in enumerate(zip(docs, doc_sets, strict=True)):
        hit = [t for t in q_terms if t in present]
        out[i, col["coverage"]] = len(hit) / len(q_terms) if q_terms else 0.0
        out[i, col["idf_coverage"]] = sum(q_idf[t] for t in hit) / q_mass
        out[i, col["bigram"]] = bigram_overlap(q_seq, d)
        out[i, col["proximity"]] = proximity(q_terms, d)
        out[i, col["title"]] = sum(q_idf[t] for t in q_terms if t in titles[i]) / q_mass
        out[i, col["length"]] = math.log1p(len(d))
    if all(c.vector is not None for c in candidates):
        out[:, col["prf"]] = feedback_similarity(np.array([c.vector for c in candidates], dtype=np.float64))
    return out
