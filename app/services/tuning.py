"""Retrieval tuning: grid-search fusion / rerank settings on labelled queries, propose the best,
and apply it to one tenant's searches only when it beats what the tenant runs now.

A tune job (`POST /v1/evals` with `kind: tune`) splits the dataset's judged queries once, by a
seeded shuffle, into a training and a held-back set. Every point of the grid is scored by mean
nDCG@10 on the training queries only; the best point and the tenant's current settings are then
scored on the held-back queries, which no choice was made on. Activation compares those two
held-back numbers (re-scoring the current settings if they changed since the job ran) and refuses
a proposal that is not strictly better. Every query runs through the production retrieval service
as the principal who started the job, so tuning sees exactly what that user's searches see.

The active settings live in `tuning_active` (one row per tenant) and reach the query path through
`RetrievalService.tuning_for`, read through a short cache.
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.jobs import requeue_active, set_job
from app.services.eval_datasets import EvalDatasetService, doc_prefix
from app.services.eval_search import distinct_docs
from core.errors import CairnError, Conflict, InvalidInput, PermissionDenied
from core.models import Principal, Role, SearchFilters, UtcDateTime
from core.tables import Job, utcnow
from core.tables_evals import EvalDataset
from core.tables_feedback import ActiveTuning, TuningProposal
from retrieval.evaluation.metrics import evaluate_run
from retrieval.service import RetrievalDefaults, RetrievalService, SearchOptions

log = logging.getLogger(__name__)
METRIC = "ndcg@10"
MAX_TRIALS = 64
_CACHE_TTL_S = 5.0


class ProposalNotBetter(Conflict):
    code = "proposal_not_better"


class SearchSpace(BaseModel):
    """Values to try per setting; a setting left out keeps the tenant's current value."""

    model_config = ConfigDict(extra="forbid")

    fusion: list[Literal["rrf", "dbsf"]] | None = Field(default=None, min_length=1, max_length=2)
    dense_weight: list[Annotated[float, Field(ge=0, le=10)]] | None = Field(default=None, min_length=1, max_length=8)
    sparse_weight: list[Annotated[float, Field(ge=0, le=10)]] | None = Field(default=None, min_length=1, max_length=8)
    rerank: list[bool] | None = Field(default=None, min_length=1, max_length=2)
    rerank_depth: list[Annotated[int, Field(ge=1, le=1000)]] | None = Field(default=None, min_length=1, max_length=8)


class TuneCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["tune"]
    dataset_id: str
    search_space: SearchSpace
    holdout: float = Field(default=0.3, gt=0, lt=1)
    seed: int = Field(default=0, ge=0)


class TunedSettings(BaseModel):
    fusion: Literal["rrf", "dbsf"]
    dense_weight: float
    sparse_weight: float
    rerank: bool
    rerank_depth: int

    @classmethod
    def of(cls, d: RetrievalDefaults) -> TunedSettings:
        return cls(
            fusion=d.fusion, dense_weight=d.dense_weight, sparse_weight=d.sparse_weight, rerank=d.rerank,
            rerank_depth=d.rerank_depth,
        )  # fmt: skip

    def options(self) -> SearchOptions:
        return SearchOptions(**self.model_dump())


class Trial(BaseModel):
    settings: TunedSettings
    train_score: float


class TuningProposalPublic(BaseModel):
    id: str
    kind: Literal["tune"] = "tune"
    dataset_id: str
    status: str  # queued | running | succeeded | failed
    progress: float
    error: str | None
    metric: str
    search_space: SearchSpace
    holdout: float
    seed: int
    train_queries: int
    holdout_queries: int
    current: TunedSettings | None  # the tenant's settings when the job ran
    proposed: TunedSettings | None
    train_score: float | None
    holdout_score: float | None
    current_train_score: float | None
    current_holdout_score: float | None
    beats_current: bool | None  # on the held-back queries
    trials: list[Trial]
    created_by: str
    created_at: UtcDateTime
    finished_at: UtcDateTime | None


class TuningProposalsPublic(BaseModel):
    data: list[TuningProposalPublic]
    count: int


class ActiveTuningPublic(BaseModel):
    tenant_id: str
    tuned: bool  # False: the server's configured defaults
    settings: TunedSettings  # what this tenant's searches use now
    defaults: TunedSettings  # the server's configured defaults
    proposal_id: str | None = None
    activated_by: str | None = None
    activated_at: UtcDateTime | None = None


def expand_grid(space: SearchSpace, current: TunedSettings) -> list[TunedSettings]:
    """Every combination, normalised (the engine has no weighted DBSF, and depth means nothing
    without rerank) and de-duplicated in order."""
    out: dict[str, TunedSettings] = {}
    for fusion, dense, sparse, rerank, depth in itertools.product(
        space.fusion or [current.fusion],
        space.dense_weight or [current.dense_weight],
        space.sparse_weight or [current.sparse_weight],
        space.rerank or [current.rerank],
        space.rerank_depth or [current.rerank_depth],
    ):
        point = TunedSettings(
            fusion=fusion,
            dense_weight=dense if fusion == "rrf" else 1.0,
            sparse_weight=sparse if fusion == "rrf" else 1.0,
            rerank=rerank,
            rerank_depth=depth if rerank else current.rerank_depth,
        )
        out.setdefault(point.model_dump_json(), point)
    return list(out.values())


def split_queries(query_ids: list[str], holdout: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held back): a seeded shuffle, at least one query on each side."""
    ids = sorted(query_ids)
    random.Random(seed).shuffle(ids)
    n_hold = min(max(1, round(len(ids) * holdout)), len(ids) - 1)
    return sorted(ids[n_hold:]), sorted(ids[:n_hold])


class ActiveTunings:
    """Per-tenant active settings, read on every search through a short cache (a write here
    clears it at once; another API replica sees the change within the TTL)."""

    def __init__(self, sessions: sessionmaker[Session], ttl_s: float = _CACHE_TTL_S) -> None:
        self._sessions = sessions
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, SearchOptions | None]] = {}
        self._lock = threading.Lock()

    def options(self, tenant_id: str) -> SearchOptions | None:
        now = time.monotonic()
        hit = self._cache.get(tenant_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        row = self.row(tenant_id)
        opts = TunedSettings.model_validate(row.settings).options() if row is not None else None
        with self._lock:
            self._cache[tenant_id] = (now, opts)
        return opts

    def row(self, tenant_id: str) -> ActiveTuning | None:
        with self._sessions() as s:
            return s.get(ActiveTuning, tenant_id)

    def set(self, tenant_id: str, proposal_id: str, settings: TunedSettings, by: str) -> None:
        with self._sessions.begin() as s:
            row = s.get(ActiveTuning, tenant_id) or ActiveTuning(tenant_id=tenant_id)
            row.proposal_id, row.settings, row.activated_by, row.activated_at = (
                proposal_id, settings.model_dump(), by, utcnow(),
            )  # fmt: skip
            s.add(row)
        self._forget(tenant_id)

    def reset(self, tenant_id: str) -> None:
        with self._sessions.begin() as s:
            row = s.get(ActiveTuning, tenant_id)
            if row is not None:
                s.delete(row)
        self._forget(tenant_id)

    def _forget(self, tenant_id: str) -> None:
        with self._lock:
            self._cache.pop(tenant_id, None)


class _Stopped(Exception):
    """Shutdown while a job ran: it goes back to the queue."""


class TuningService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        datasets: EvalDatasetService,
        retrieval: RetrievalService,
        active: ActiveTunings,
        enqueue: Callable[[str], None],
    ) -> None:
        self._sessions = sessions
        self._datasets = datasets
        self._retrieval = retrieval
        self.active = active
        self._enqueue = enqueue
        self._stop = threading.Event()

    def current(self, tenant_id: str) -> TunedSettings:
        return TunedSettings.of(self._retrieval.effective_defaults(tenant_id))

    # ---- create / read --------------------------------------------------------------------

    def create(self, principal: Principal, body: TuneCreate) -> TuningProposalPublic:
        if not principal.can_write():
            raise PermissionDenied("a tuning job needs the editor or admin role")
        dataset = self._datasets.load(principal, body.dataset_id)
        grid = expand_grid(body.search_space, self.current(principal.tenant_id))
        if len(grid) > MAX_TRIALS:
            raise InvalidInput(f"the search space has {len(grid)} points; the limit is {MAX_TRIALS}",
                               field="search_space")
        judged = [q for q, rels in dataset.qrels.items() if any(int(g) > 0 for g in rels.values())]
        if len(judged) < 2:
            raise InvalidInput("tuning needs at least two queries with a relevant document (one to train on, "
                               "one to hold back)", field="dataset_id")  # fmt: skip
        proposal_id = secrets.token_hex(12)
        with self._sessions.begin() as s:
            s.add(TuningProposal(
                id=proposal_id, tenant_id=principal.tenant_id, dataset_id=dataset.id,
                principal=principal.model_dump(mode="json"), search_space=body.search_space.model_dump(),
                holdout=body.holdout, seed=body.seed, status="queued", metric=METRIC, train_queries=[],
                holdout_queries=[], current={}, trials=[], created_by=principal.user,
            ))  # fmt: skip
            s.add(Job(id=proposal_id, tenant_id=principal.tenant_id, kind="tune", state="queued",
                      created_by=principal.user, doc_id=None))  # fmt: skip
        self._enqueue(proposal_id)
        return self.get(principal, proposal_id)

    def _load(self, s: Session, principal: Principal, proposal_id: str) -> TuningProposal:
        """Visible to whoever may see its dataset (as evaluation runs are); 404 otherwise."""
        return self._datasets.load_child(s, principal, TuningProposal, proposal_id, "tuning proposal")

    def get(self, principal: Principal, proposal_id: str) -> TuningProposalPublic:
        with self._sessions() as s:
            row = self._load(s, principal, proposal_id)
            job = s.get(Job, proposal_id)
            return _public(row, job.progress if job else 0.0)

    def list(self, principal: Principal, limit: int = 50) -> TuningProposalsPublic:
        visible = [d.id for d in self._datasets.list(principal).data]
        with self._sessions() as s:
            rows = s.scalars(
                select(TuningProposal)
                .where(TuningProposal.tenant_id == principal.tenant_id, TuningProposal.dataset_id.in_(visible))
                .order_by(TuningProposal.created_at.desc())
                .limit(limit)
            ).all()
            progress = {j.id: j.progress for j in s.scalars(select(Job).where(Job.id.in_([r.id for r in rows])))}
            data = [_public(r, progress.get(r.id, 0.0)) for r in rows]
        return TuningProposalsPublic(data=data, count=len(data))

    # ---- activate / reset -----------------------------------------------------------------

    def activate(self, principal: Principal, proposal_id: str) -> ActiveTuningPublic:
        if principal.role is not Role.admin:
            raise PermissionDenied("activating a tuning proposal needs the admin role")
        with self._sessions() as s:
            row = self._load(s, principal, proposal_id)
            dataset = s.get(EvalDataset, row.dataset_id)
        if row.status != "succeeded" or row.proposed is None or row.holdout_score is None or dataset is None:
            raise Conflict(f"tuning proposal {proposal_id!r} is {row.status}; only a finished one can be activated")
        proposed = TunedSettings.model_validate(row.proposed)
        now = self.current(principal.tenant_id)
        current_score = row.current_holdout_score or 0.0
        if now.model_dump() != row.current:  # the tenant's settings changed since the job ran
            ranker = self._ranker(Principal.model_validate(row.principal), dataset)
            current_score = asyncio.run(ranker.score(now, list(row.holdout_queries)))
        if not row.holdout_score > current_score + 1e-9:
            raise ProposalNotBetter(
                f"the proposal scores {METRIC} {row.holdout_score:.4f} on the held-back queries and the "
                f"current settings {current_score:.4f}; it is not better, so nothing was changed",
                holdout_score=round(row.holdout_score, 6), current_holdout_score=round(current_score, 6),
            )  # fmt: skip
        self.active.set(principal.tenant_id, proposal_id, proposed, principal.user)
        return self.active_public(principal)

    def reset(self, principal: Principal) -> ActiveTuningPublic:
        if principal.role is not Role.admin:
            raise PermissionDenied("resetting the tuning needs the admin role")
        self.active.reset(principal.tenant_id)
        return self.active_public(principal)

    def active_public(self, principal: Principal) -> ActiveTuningPublic:
        row = self.active.row(principal.tenant_id)
        defaults = TunedSettings.of(self._retrieval.defaults)
        if row is None:
            return ActiveTuningPublic(tenant_id=principal.tenant_id, tuned=False, settings=defaults, defaults=defaults)
        return ActiveTuningPublic(
            tenant_id=principal.tenant_id, tuned=True, settings=TunedSettings.model_validate(row.settings),
            defaults=defaults, proposal_id=row.proposal_id, activated_by=row.activated_by,
            activated_at=row.activated_at,
        )  # fmt: skip

    # ---- the job --------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def recover(self) -> int:
        return requeue_active(self._sessions, TuningProposal, self._enqueue)

    def run_jobs(self, ids: builtins.list[str]) -> builtins.list[str]:  # `list` is a method here
        """Runs the tuning jobs among `ids` (they share the evaluation queue); returns the rest."""
        with self._sessions() as s:
            mine = set(s.scalars(select(TuningProposal.id).where(TuningProposal.id.in_(ids))))
        for proposal_id in (i for i in ids if i in mine):
            try:
                self.run(proposal_id)
            except _Stopped:
                self._set(proposal_id, "queued", 0.0)
            except CairnError as exc:
                self._fail(proposal_id, exc.message)
            except Exception:
                log.exception("tuning job %s crashed", proposal_id)
                self._fail(proposal_id, "internal error while tuning; see the server log")
        return [i for i in ids if i not in mine]

    def run(self, proposal_id: str) -> None:
        with self._sessions() as s:
            row = s.get(TuningProposal, proposal_id)
            if row is None or row.status in ("succeeded", "failed"):
                return
            dataset = s.get(EvalDataset, row.dataset_id)
        if dataset is None:
            self._fail(proposal_id, "the dataset was deleted before the job started")
            return
        self._set(proposal_id, "running", 0.0)
        while self._datasets.document_states(dataset).get("queued", 0) > 0:
            if self._stop.wait(0.2):
                raise _Stopped
        judged = [q for q, rels in dataset.qrels.items() if any(int(g) > 0 for g in rels.values())]
        train, held = split_queries(judged, row.holdout, row.seed)
        current = self.current(row.tenant_id)
        grid = expand_grid(SearchSpace.model_validate(row.search_space), current)
        ranker = self._ranker(Principal.model_validate(row.principal), dataset)
        trials: list[Trial] = []
        for i, point in enumerate(grid):
            if self._stop.is_set():
                raise _Stopped
            trials.append(Trial(settings=point, train_score=asyncio.run(ranker.score(point, train))))
            self._set(proposal_id, "running", round((i + 1) / (len(grid) + 2), 4))
        best = max(trials, key=lambda t: t.train_score)  # the first of equals: grid order
        known = {t.settings.model_dump_json(): t.train_score for t in trials}
        current_train = known.get(current.model_dump_json())
        if current_train is None:
            current_train = asyncio.run(ranker.score(current, train))
        holdout_score = asyncio.run(ranker.score(best.settings, held))
        current_holdout = asyncio.run(ranker.score(current, held))
        with self._sessions.begin() as s:
            stored = s.get(TuningProposal, proposal_id)
            if stored is None:
                return
            stored.train_queries, stored.holdout_queries = train, held
            stored.current, stored.proposed = current.model_dump(), best.settings.model_dump()
            stored.train_score, stored.holdout_score = best.train_score, holdout_score
            stored.current_train_score, stored.current_holdout_score = current_train, current_holdout
            stored.trials = [t.model_dump() for t in trials]
            stored.status, stored.finished_at = "succeeded", utcnow()
            set_job(s, proposal_id, "succeeded", 1.0, finished=True)

    def _ranker(self, principal: Principal, dataset: EvalDataset) -> _Ranker:
        return _Ranker(self._retrieval, principal, dataset)

    def _set(self, proposal_id: str, status: str, progress: float) -> None:
        with self._sessions.begin() as s:
            row = s.get(TuningProposal, proposal_id)
            if row is not None:
                row.status = status
            set_job(s, proposal_id, status, progress)

    def _fail(self, proposal_id: str, reason: str) -> None:
        with self._sessions.begin() as s:
            row = s.get(TuningProposal, proposal_id)
            if row is not None:
                row.status, row.error, row.finished_at = "failed", reason, utcnow()
            set_job(s, proposal_id, "failed", error=reason, finished=True)


class _Ranker:
    """Scores settings on a set of the dataset's queries through the production query path."""

    def __init__(self, retrieval: RetrievalService, principal: Principal, dataset: EvalDataset) -> None:
        self._retrieval = retrieval
        self._principal = principal
        self._queries: dict[str, str] = dict(dataset.queries)
        self._qrels = {q: {d: int(g) for d, g in rels.items()} for q, rels in dataset.qrels.items()}
        if dataset.source:
            self._filters = SearchFilters(source=[dataset.source])
            prefix = doc_prefix(dataset.id)
            self._to_dataset_id: Callable[[str], str] = lambda d: d.removeprefix(prefix)
        else:
            self._filters = SearchFilters.model_validate(dataset.filters)
            self._to_dataset_id = lambda d: d

    async def score(self, settings: TunedSettings, query_ids: list[str]) -> float:
        options = settings.options()
        ranked: dict[str, list[str]] = {}
        for qid in query_ids:
            result = await self._retrieval.retrieve(
                self._principal, self._queries.get(qid, "") or " ", top_k=30, filters=self._filters,
                options=options,
            )  # fmt: skip
            ranked[qid] = [self._to_dataset_id(d) for d in distinct_docs([c.doc_id for c in result.chunks], 10)]
        return evaluate_run(ranked, {q: self._qrels[q] for q in query_ids}, ks=[10], metrics=["ndcg"])[METRIC]


def _public(row: TuningProposal, progress: float) -> TuningProposalPublic:
    beats = None
    if row.holdout_score is not None and row.current_holdout_score is not None:
        beats = row.holdout_score > row.current_holdout_score + 1e-9
    return TuningProposalPublic(
        id=row.id, dataset_id=row.dataset_id, status=row.status, progress=progress, error=row.error,
        metric=row.metric, search_space=SearchSpace.model_validate(row.search_space), holdout=row.holdout,
        seed=row.seed, train_queries=len(row.train_queries), holdout_queries=len(row.holdout_queries),
        current=TunedSettings.model_validate(row.current) if row.current else None,
        proposed=TunedSettings.model_validate(row.proposed) if row.proposed else None,
        train_score=row.train_score, holdout_score=row.holdout_score, current_train_score=row.current_train_score,
        current_holdout_score=row.current_holdout_score, beats_current=beats,
        trials=[Trial.model_validate(t) for t in row.trials], created_by=row.created_by, created_at=row.created_at,
        finished_at=row.finished_at,
    )  # fmt: skip

