"""Rank fusion as pure functions over ranked `Hit` lists.

Used twice on the query path: to fuse one gatherer's dense and BM25 lists when the stage scores
must survive (rerank / explain), and to merge the lists of several gatherers. Inputs are never
mutated: every output hit is a new `Hit` with the fused score and provenance.

A `Hit` is an id and its scores; the chunk itself (payload: text, title, ...) is read from the
index only for the few hits that survive fusion (`retrieval.gather.IndexGatherBackend.chunks`),
because reading payloads is most of what a query costs in the engine (late materialisation).

RRF here is exactly the engine's (qdrant-edge 0.9 / Qdrant server), measured by comparing scores:

    rrf(d) = sum over lists L containing d of  1 / (k - 1 + rank_L(d) / w_L)     (rank from 1)

With all weights 1 this is the textbook 1 / (k + rank - 1). A weight scales the *rank* (w = 0.5
makes position 3 count like position 6), not the contribution; keeping the engine's definition
means client-side and engine-side fusion order results identically, so turning `explain` on never
changes the answer. A list with weight 0 is ignored.

DBSF (distribution-based score fusion) normalises each list's raw scores to mean +- 3 standard
deviations and sums them, so it keeps score *gaps* that RRF throws away.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from core.models import RetrievedChunk

FusionMethod = Literal["rrf", "dbsf"]


@dataclass(slots=True)
class Hit:
    """One ranked candidate on the query path: its chunk id, current score and per-stage scores
    (for `explain` and the reranker). `chunk` is None until the payload has been read (index
    hits) and set from the start for sources that return whole chunks."""

    chunk_id: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    chunk: RetrievedChunk | None = None
    gatherer: str | None = None

    @classmethod
    def of(cls, chunk: RetrievedChunk) -> Hit:
        return cls(chunk.chunk_id, chunk.score, dict(chunk.scores), chunk, chunk.gatherer)

    def resolved(self, chunk: RetrievedChunk | None = None) -> RetrievedChunk:
        """The chunk (`chunk`, else the one this hit carries) with this hit's scores on it."""
        base = chunk if chunk is not None else self.chunk
        if base is None:
            raise ValueError(f"hit {self.chunk_id} has no chunk yet")
        return base.model_copy(update={"score": self.score, "scores": self.scores, "gatherer": self.gatherer})


@dataclass(frozen=True)
class Contribution:
    """Where a fused chunk came from: the list's name, its 1-based rank there and its score."""

    source: str
    rank: int
    score: float


@dataclass(frozen=True)
class Fused:
    hit: Hit
    contributions: tuple[Contribution, ...]


def rrf_term(rank: int, k: int, weight: float = 1.0) -> float:
    """One list's RRF contribution for a 1-based `rank` (see the module docstring)."""
    return 1.0 / (k - 1 + rank / weight)


def _collect(
    lists: Mapping[str, Sequence[Hit]],
) -> tuple[dict[str, Hit], dict[str, dict[str, float]], dict[str, list[Contribution]]]:
    """First-seen hit per id (in list order), the stage scores of every list that has it (the
    first list's value wins a clash) and every list's (rank, score) for it."""
    first: dict[str, Hit] = {}
    stages: dict[str, dict[str, float]] = {}
    seen: dict[str, list[Contribution]] = {}
    for name, ranked in lists.items():
        done: set[str] = set()
        for rank, hit in enumerate(ranked, start=1):
            cid = hit.chunk_id
            if cid in done:  # a list repeating a chunk counts it once, at its best rank
                continue
            done.add(cid)
            if cid not in first:
                first[cid] = hit
                stages[cid] = dict(hit.scores)
            else:  # keep every list's stage scores
                have = stages[cid]
                for key, value in hit.scores.items():
                    have.setdefault(key, value)
            seen.setdefault(cid, []).append(Contribution(name, rank, hit.score))
    return first, stages, seen


def _ranked(
    first: dict[str, Hit],
    stages: dict[str, dict[str, float]],
    seen: dict[str, list[Contribution]],
    fused: dict[str, float],
    key: str,
    limit: int | None,
) -> list[Fused]:
    # ties: better best-rank first, then first-seen order (dicts keep insertion order)
    order = sorted(fused, key=lambda cid: (-fused[cid], min(c.rank for c in seen[cid])))
    if limit is not None:
        order = order[:limit]
    out: list[Fused] = []
    for cid in order:
        hit, score = first[cid], fused[cid]
        scores = stages[cid]
        scores[key] = score
        out.append(Fused(Hit(cid, score, scores, hit.chunk, hit.gatherer), tuple(seen[cid])))
    return out


def _check_weights(
    lists: Mapping[str, Sequence[Hit]], weights: Mapping[str, float] | None
) -> None:
    if weights is None:
        return
    bad = {n: w for n, w in weights.items() if not (w >= 0 and math.isfinite(w))}
    if bad:
        raise ValueError(f"fusion weights must be finite and >= 0, got {bad}")
    unknown = set(weights) - set(lists)
    if unknown:
        raise ValueError(f"weights name lists that were not given: {sorted(unknown)}")


def rrf(
    lists: Mapping[str, Sequence[Hit]],
    *,
    k: int = 60,
    weights: Mapping[str, float] | None = None,
    key: str = "rrf",
    limit: int | None = None,
) -> list[Fused]:
    """Reciprocal-rank fusion of named ranked lists; `scores[key]` records the fused score."""
    if k < 1:
        raise ValueError(f"rrf k must be >= 1, got {k}")
    _check_weights(lists, weights)
    first, stages, seen = _collect(lists)
    fused: dict[str, float] = {}
    for cid, contribs in seen.items():
        total = 0.0
        for c in contribs:
            w = 1.0 if weights is None else weights.get(c.source, 1.0)
            if w > 0:
                total += rrf_term(c.rank, k, w)
        fused[cid] = total
    return _ranked(first, stages, seen, fused, key, limit)


def _normalise(scores: Sequence[float]) -> list[float]:
    """Mean +- 3 sample standard deviations to [0, 1], as Qdrant's DBSF does (checked against
    the engine's scores); a list whose scores are all equal maps to 0.5."""
    n = len(scores)
    mean = sum(scores) / n
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1)) if n > 1 else 0.0
    if std == 0:
        return [0.5] * n
    low, high = mean - 3 * std, mean + 3 * std
    return [(s - low) / (high - low) for s in scores]


def dbsf(
    lists: Mapping[str, Sequence[Hit]],
    *,
    weights: Mapping[str, float] | None = None,
    key: str = "dbsf",
    limit: int | None = None,
) -> list[Fused]:
    """Distribution-based score fusion of named lists of raw scores; optional linear weights."""
    _check_weights(lists, weights)
    first, stages, seen = _collect(lists)
    fused: dict[str, float] = dict.fromkeys(seen, 0.0)
    for name, ranked in lists.items():
        w = 1.0 if weights is None else weights.get(name, 1.0)
        if not ranked or w == 0:
            continue
        unique: dict[str, float] = {}
        for h in ranked:
            unique.setdefault(h.chunk_id, h.score)
        for cid, norm in zip(unique, _normalise(list(unique.values())), strict=True):
            fused[cid] += w * norm
    return _ranked(first, stages, seen, fused, key, limit)


def fuse(
    lists: Mapping[str, Sequence[Hit]],
    method: FusionMethod,
    *,
    k: int = 60,
    weights: Mapping[str, float] | None = None,
    key: str = "fused",
    limit: int | None = None,
) -> list[Fused]:
    if method == "rrf":
        return rrf(lists, k=k, weights=weights, key=key, limit=limit)
    return dbsf(lists, weights=weights, key=key, limit=limit)
