"""Property: no read path ever returns or cites a chunk or document the principal may not see.

Seeded random worlds (tenants, users with groups, documents with random ACLs uploaded by random
editors; document ids repeat across tenants) are indexed once each with the real embedder and
engine; then many cheap probes run per world, before and after the world changes (ACL changes by
re-versioning, new text, deletes). Each probe is one read by one principal through a production
path: `RetrievalService` (what POST /v1/search uses), document list / get, `AnswerService`
(grounded_qa, support_assistant, streamed), run and job detail, and the same over HTTP with real
keys. The oracle is the ACL rule evaluated in Python from what the test wrote; every document
version carries a unique marker word, so an answer quoting a chunk it should not have seen is
caught even in free text.
"""

from __future__ import annotations

import asyncio
import random
import re
import string
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.routes.jobs import get_job
from app.services.documents import Upload
from app.services.runs import timeline
from core.errors import NotFound
from core.models import DocumentMetadata, Principal, Role, SearchFilters, chunk_id

pytestmark = pytest.mark.integration

MIN_PROBES = 10_000
WORLDS = 3
TENANTS_PER_WORLD = 3
DOCS_PER_TENANT = 14
WORDS = ["refund", "invoice", "vpn", "salary", "contract", "laptop", "holiday", "policy", "ticket", "budget"]
GROUPS = ["support", "sales", "hr", "eng", "legal"]
NAMES = ["ann", "ben", "cat", "dan", "eve", "fay", "gus"]
MARKER = re.compile(r"\bzq[a-z]{6}\b")


class CachedQueries:
    """The real embedder, with query vectors memoised: probes repeat a small pool of queries, and
    embedding each one again would spend the time budget on the model instead of on the probes."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._cache: dict[str, list[float]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def embed_query(self, text: str) -> list[float]:
        if text not in self._cache:
            self._cache[text] = self._inner.embed_query(text)
        return self._cache[text]


@dataclass
class Doc:
    tenant: str
    doc_id: str
    acl: list[str]  # as stored: the uploader is always added
    version: int
    uploader: str
    markers: set[str] = field(default_factory=set)  # of the live version


@dataclass
class World:
    tenants: list[str]
    directory: dict[str, list[Principal]]  # tenant -> its users as their keys describe them
    docs: dict[tuple[str, str], Doc] = field(default_factory=dict)
    # every chunk id / marker ever written, so a stale version or a foreign chunk is recognised
    chunk_owner: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    marker_owner: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    jobs: list[tuple[str, str, str]] = field(default_factory=list)  # (tenant, creator, job_id)
    runs: list[tuple[Principal, str]] = field(default_factory=list)  # (starter, run_id)
    epoch: int = 0  # runs from this index on were answered in the world as it is now
    keys: dict[Principal, str] = field(default_factory=dict)

    def can_see(self, p: Principal, key: tuple[str, str]) -> bool:
        doc = self.docs.get(key)
        return doc is not None and doc.tenant == p.tenant_id and not set(p.acl_principals).isdisjoint(doc.acl)

    def visible(self, p: Principal) -> set[str]:
        return {d for (t, d) in self.docs if t == p.tenant_id and self.can_see(p, (t, d))}


class Leak(AssertionError):
    pass


def check_chunk(w: World, p: Principal, chunk: str, doc_id: str | None = None, version: int | None = None) -> None:
    owner = w.chunk_owner.get(chunk)
    if owner is None:
        raise Leak(f"{p}: chunk {chunk} is not one this world wrote")
    tenant, doc, ver = owner
    if tenant != p.tenant_id or not w.can_see(p, (tenant, doc)):
        raise Leak(f"{p}: chunk {chunk} of {tenant}/{doc} v{ver} is not visible")
    if ver != w.docs[(tenant, doc)].version:
        live = w.docs[(tenant, doc)].version
        raise Leak(f"{p}: chunk {chunk} is of {tenant}/{doc} v{ver}, the live version is v{live}")
    if doc_id is not None and doc_id != doc:
        raise Leak(f"{p}: chunk {chunk} is reported as document {doc_id}, it belongs to {doc}")
    if version is not None and version != ver:
        raise Leak(f"{p}: chunk {chunk} is reported as version {version}, it is v{ver}")


def check_text(w: World, p: Principal, text: str) -> None:
    """Free text (answers, quotes, streamed tokens) may quote only what the principal can see."""
    for m in MARKER.findall(text):
        tenant, doc, ver = w.marker_owner[m]
        if tenant != p.tenant_id or not w.can_see(p, (tenant, doc)) or ver != w.docs[(tenant, doc)].version:
            raise Leak(f"{p}: text quotes {tenant}/{doc} v{ver}: {text[:200]!r}")


def check_answer(w: World, p: Principal, result: dict[str, Any]) -> None:
    for cid in result.get("retrieved", []):
        check_chunk(w, p, cid)
    for c in result.get("citations", []):
        check_chunk(w, p, c["chunk_id"], c["doc_id"], c["version"])
        for q in [c["quote"], *(x["text"] for x in c.get("quotes", []))]:
            check_text(w, p, q)
    check_text(w, p, result.get("answer", ""))


# ---- building and changing a world ----------------------------------------------------------


def sentence(rng: random.Random, marker: str) -> str:
    words = rng.sample(WORDS, rng.randint(3, 6))
    return f"The {' '.join(words)} note {marker} applies."


def random_acl(rng: random.Random, tenant_users: list[str]) -> list[str]:
    pool = [f"user:{u}" for u in tenant_users] + [f"group:{g}" for g in GROUPS] + ["tenant:*"]
    weights = [3] * (len(pool) - 1) + [1]  # tenant-wide sharing is the exception
    return sorted(set(rng.choices(pool, weights=weights, k=rng.randint(1, 3))))


def put(c: Any, w: World, rng: random.Random, tenant: str, doc_id: str, uploader: str) -> None:
    users = [p.user for p in w.directory[tenant]]
    markers = {"zq" + "".join(rng.choices(string.ascii_lowercase, k=6)) for _ in range(2)}
    text = " ".join(sentence(rng, m) for m in sorted(markers))
    acl = random_acl(rng, users)
    owner = Principal(tenant_id=tenant, user=uploader, role=Role.editor)
    res = c.documents.submit(owner, Upload(text.encode(), f"{doc_id}.txt", "text/plain"),
                             DocumentMetadata(doc_id=doc_id, title=f"{doc_id} notes", acl=acl))
    stored = sorted({*acl, f"user:{uploader}"})
    w.docs[(tenant, doc_id)] = Doc(tenant, doc_id, stored, res.version, uploader, markers)
    for i in range(4):  # short texts: one chunk, but allow for a split
        w.chunk_owner[chunk_id(tenant, doc_id, res.version, i)] = (tenant, doc_id, res.version)
    for m in markers:
        w.marker_owner[m] = (tenant, doc_id, res.version)
    w.jobs.append((tenant, uploader, res.job_id))


def build_world(c: Any, seed: int) -> World:
    rng = random.Random(seed)
    tenants = [f"w{seed}t{i}" for i in range(TENANTS_PER_WORLD)]
    directory: dict[str, list[Principal]] = {}
    for t in tenants:
        users = rng.sample(NAMES, 5)
        directory[t] = [
            Principal(tenant_id=t, user=u, groups=tuple(rng.sample(GROUPS, rng.randint(0, 2))),
                      role=Role.admin if i == 0 else rng.choice([Role.editor, Role.reader]))
            for i, u in enumerate(users)
        ]
    w = World(tenants, directory)
    for t in tenants:
        for i in range(DOCS_PER_TENANT):
            put(c, w, rng, t, f"d{i}", rng.choice(NAMES[:5]))
    return w


def change_world(c: Any, w: World, rng: random.Random) -> None:
    """ACLs move with new versions, texts change, some documents go away, new ones arrive."""
    for (t, d), doc in list(w.docs.items()):
        roll = rng.random()
        if roll < 0.35:
            put(c, w, rng, t, d, doc.uploader)
        elif roll < 0.5:
            c.documents.delete(Principal(tenant_id=t, user=doc.uploader, role=Role.editor), d)
            del w.docs[(t, d)]
    for t in w.tenants:
        for i in range(DOCS_PER_TENANT, DOCS_PER_TENANT + 3):
            put(c, w, rng, t, f"d{i}", rng.choice(NAMES))


def outsider(rng: random.Random, w: World) -> Principal:
    """Someone the directory does not know: a name of another tenant, random groups."""
    return Principal(tenant_id=rng.choice([*w.tenants, "nobody"]), user=rng.choice(NAMES),
                     groups=tuple(rng.sample(GROUPS, rng.randint(0, 3))))


# ---- probes ------------------------------------------------------------------------------------


class Prober:
    def __init__(self, c: Any, http: httpx.AsyncClient, queries: list[str]) -> None:
        self.c = c
        self.http = http
        self.queries = queries
        self.count: Counter[str] = Counter()

    def principal(self, rng: random.Random, w: World) -> Principal:
        if rng.random() < 0.1:
            return outsider(rng, w)
        return rng.choice(w.directory[rng.choice(w.tenants)])

    async def search(self, rng: random.Random, w: World, p: Principal) -> None:
        q = rng.choice(self.queries)
        filters = None
        if rng.random() < 0.3:  # filters may only narrow: naming invisible documents must not help
            filters = SearchFilters(doc_ids=[f"d{rng.randrange(DOCS_PER_TENANT + 3)}" for _ in range(3)])
        mode = rng.choice(["hybrid", "sparse", "dense"])
        res = await self.c.retrieval.retrieve(p, q, top_k=rng.randint(1, 30), mode=mode, filters=filters)
        for h in res.chunks:
            check_chunk(w, p, h.chunk_id, h.doc_id, h.version)
            check_text(w, p, h.text)
        if filters is None and mode != "sparse" and not res.chunks and w.visible(p) and q.split()[0] in WORDS:
            raise AssertionError(f"{p} sees {sorted(w.visible(p))} but `{q}` found nothing")
        self.count["search"] += 1

    async def answer(self, rng: random.Random, w: World, p: Principal) -> None:
        workflow = "support_assistant" if rng.random() < 0.15 else "grounded_qa"
        q = rng.choice(self.queries)
        if rng.random() < 0.25 and workflow == "grounded_qa":
            final: dict[str, Any] = {}
            async for e in self.c.answers.stream(p, q, workflow, top_k=rng.randint(1, 8)):
                if e.type == "token":
                    check_text(w, p, e.text or "")
                elif e.type == "final" and e.result is not None:
                    final = e.result.model_dump(mode="json")
            self.count["answer_stream"] += 1
        else:
            final = (await self.c.answers.answer(p, q, workflow, top_k=rng.randint(1, 8))).model_dump(mode="json")
            self.count["answer"] += 1
        check_answer(w, p, final)
        w.runs.append((p, final["run_id"]))

    def documents(self, w: World, p: Principal) -> None:
        listed = {d.document_id for d in self.c.documents.list(p, limit=500).data}
        assert listed == w.visible(p), (p, listed ^ w.visible(p))
        self.count["document_list"] += 1

    def document_get(self, rng: random.Random, w: World, p: Principal) -> None:
        doc_id = f"d{rng.randrange(DOCS_PER_TENANT + 3)}"
        if w.can_see(p, (p.tenant_id, doc_id)):
            got = self.c.documents.get(p, doc_id)
            assert got.current_version == w.docs[(p.tenant_id, doc_id)].version
        else:
            with pytest.raises(NotFound):
                self.c.documents.get(p, doc_id)
        self.count["document_get"] += 1

    def run_detail(self, rng: random.Random, w: World, p: Principal) -> None:
        if not w.runs:
            return
        i = rng.randrange(len(w.runs))
        starter, run_id = w.runs[i]
        if rng.random() < 0.5:
            p = starter  # half the time the one who asked looks at the run
        may = p.tenant_id == starter.tenant_id and (p.user == starter.user or p.role is Role.admin)
        if not may:
            with pytest.raises(NotFound):
                self.c.answers.engine.get_run(run_id, p)
        else:
            view = timeline(self.c.answers.engine.get_run(run_id, p), self.c.answers)
            # a run keeps the answer of its time; it is checked against the world it was answered in
            if i >= w.epoch and p == starter and view.result is not None:
                check_answer(w, p, view.result.model_dump(mode="json"))
        self.count["run_detail"] += 1

    def job_detail(self, rng: random.Random, w: World, p: Principal) -> None:
        tenant, creator, job_id = rng.choice(w.jobs)
        may = p.tenant_id == tenant and (p.user == creator or p.role is Role.admin)
        if may:
            assert get_job(job_id, p, self.c).id == job_id
        else:
            with pytest.raises(NotFound):
                get_job(job_id, p, self.c)
        self.count["job_detail"] += 1

    async def over_http(self, rng: random.Random, w: World) -> None:
        """The same reads through the routes, with the principal taken from a real key."""
        t = rng.choice(w.tenants)
        p = rng.choice(w.directory[t])
        h = {"Authorization": f"Bearer {w.keys[p]}"}
        q = rng.choice(self.queries)
        kind = rng.choice(["search", "answer", "list", "get", "run", "job"])
        if kind == "search":
            r = await self.http.post("/v1/search", headers=h, json={"query": q, "top_k": rng.randint(1, 20)})
            assert r.status_code == 200, r.text
            for hit in r.json()["results"]:
                check_chunk(w, p, hit["chunk_id"], hit["doc_id"], hit["version"])
                check_text(w, p, hit["text"])
        elif kind == "answer":
            r = await self.http.post("/v1/answers", headers=h, json={"question": q, "top_k": rng.randint(1, 8)})
            assert r.status_code == 200, r.text
            check_answer(w, p, r.json())
            w.runs.append((p, r.json()["run_id"]))
        elif kind == "list":
            r = await self.http.get("/v1/documents", headers=h, params={"limit": 500})
            assert r.status_code == 200, r.text
            assert {d["document_id"] for d in r.json()["data"]} == w.visible(p)
        elif kind == "get":
            doc_id = f"d{rng.randrange(DOCS_PER_TENANT + 3)}"
            r = await self.http.get(f"/v1/documents/{doc_id}", headers=h)
            assert r.status_code == (200 if w.can_see(p, (t, doc_id)) else 404), (p, doc_id, r.text)
        elif kind == "run" and w.runs:
            starter, run_id = rng.choice(w.runs)
            r = await self.http.get(f"/v1/runs/{run_id}", headers=h)
            may = t == starter.tenant_id and (p.user == starter.user or p.role is Role.admin)
            assert r.status_code == (200 if may else 404), (p, starter, r.text)
        elif kind == "job":
            tenant, creator, job_id = rng.choice(w.jobs)
            r = await self.http.get(f"/v1/jobs/{job_id}", headers=h)
            may = t == tenant and (p.user == creator or p.role is Role.admin)
            assert r.status_code == (200 if may else 404), (p, r.text)
        self.count[f"http_{kind}"] += 1

    async def run(self, rng: random.Random, w: World, n: int) -> None:
        for _ in range(n):
            p = self.principal(rng, w)
            roll = rng.random()
            if roll < 0.45:
                await self.search(rng, w, p)
            elif roll < 0.60:
                await self.answer(rng, w, p)
            elif roll < 0.67:
                self.documents(w, p)
            elif roll < 0.79:
                self.document_get(rng, w, p)
            elif roll < 0.87:
                self.run_detail(rng, w, p)
            elif roll < 0.95:
                self.job_detail(rng, w, p)
            else:
                await self.over_http(rng, w)


def query_pool(rng: random.Random, n: int) -> list[str]:
    pool = {" ".join(rng.sample(WORDS, rng.randint(1, 3))) for _ in range(n)}
    # a question that matches nothing, one of pure stopwords, and one naming another tenant's marker
    return sorted(pool) + ["what about the weather", "the of and", "zqaaaaaa zqbbbbbb"]


def test_no_read_path_ever_leaks(tmp_path, embedder) -> None:  # type: ignore[no-untyped-def]
    from app.container import Container
    from core.settings import Settings

    t0 = time.perf_counter()
    cached = CachedQueries(embedder)
    c = Container(Settings(data_dir=tmp_path, admin_key="k" * 24), embedder=cached)  # type: ignore[arg-type]
    c.start()
    app = create_app(container=c)
    app.state.container = c  # ASGITransport does not run the lifespan; the container is already started
    rng = random.Random(2024)
    queries = query_pool(rng, 40)
    for q in queries:  # warm the cache once; probes then cost an engine query, not a model call
        cached.embed_query(q)

    async def main() -> Counter[str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cairn.test") as http:
            prober = Prober(c, http, queries)
            worlds = [build_world(c, seed) for seed in range(WORLDS)]
            assert await asyncio.to_thread(c.runner.wait_idle, 300)
            for w in worlds:
                for ps in w.directory.values():
                    for p in ps:
                        w.keys[p] = c.keys.create(p.tenant_id, p.user, list(p.groups), p.role)[1]
            per_phase = MIN_PROBES // (2 * WORLDS) + 1
            for w in worlds:
                await prober.run(rng, w, per_phase)
            for w in worlds:
                change_world(c, w, rng)
            assert await asyncio.to_thread(c.runner.wait_idle, 300)
            for w in worlds:
                w.epoch = len(w.runs)
                await prober.run(rng, w, per_phase)
            return prober.count

    try:
        count = asyncio.run(main())
    finally:
        c.close()
    total = sum(count.values())
    print(f"\n{total} probes in {time.perf_counter() - t0:.1f} s: {dict(sorted(count.items()))}")
    assert total >= MIN_PROBES
    assert min(count[k] for k in ("search", "answer", "answer_stream", "document_list", "document_get",
                                  "run_detail", "job_detail", "http_search", "http_answer")) > 0
