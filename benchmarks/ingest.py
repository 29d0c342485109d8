"""Ingest SciFact through the real pipeline; compare with the raw model on the same chunk texts.

    .venv/bin/python benchmarks/ingest.py [--limit N] [--out results.json]

Prints JSON: docs/s and chunks/s of the pipeline (upload -> parse -> chunk -> embed -> index,
through DocumentService and the job runner), the raw model's chunks/s on exactly the chunk
texts the pipeline produced (measured in the same run), their ratio (target >= 0.8), and
fp32 vs bf16 throughput with the cosine between the two.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app  # noqa: E402,F401  (offline switches)
from app.container import Container  # noqa: E402
from app.services.documents import Upload  # noqa: E402
from core.errors import RateLimited  # noqa: E402
from core.models import DocumentMetadata, Principal, Role  # noqa: E402
from core.settings import Settings  # noqa: E402
from retrieval.embedder import SentenceTransformerEmbedder  # noqa: E402

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def load_corpus(limit: int | None) -> list[dict[str, str]]:
    rows = []
    with (SCIFACT / "corpus.jsonl").open() as f:
        for line in f:
            rows.append(json.loads(line))
            if limit and len(rows) >= limit:
                break
    return rows


def precision_comparison(texts: list[str]) -> dict[str, float]:
    import numpy as np

    out: dict[str, float] = {}
    vecs = {}
    for precision in ("fp32", "bf16"):
        e = SentenceTransformerEmbedder(precision=precision)
        e.warm_up()
        e.embed_documents(texts[:32])
        t = time.perf_counter()
        vecs[precision] = np.asarray(e.embed_documents(texts))
        out[f"{precision}_chunks_per_s"] = round(len(texts) / (time.perf_counter() - t), 1)
    cos = (vecs["fp32"] * vecs["bf16"]).sum(axis=1)
    out["bf16_vs_fp32_cosine_mean"] = round(float(cos.mean()), 5)
    out["bf16_vs_fp32_cosine_min"] = round(float(cos.min()), 5)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if not (SCIFACT / "corpus.jsonl").exists():
        print(json.dumps({"skipped": f"SciFact not found at {SCIFACT}"}))
        return
    corpus = load_corpus(args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), admin_key="bench-admin-key-000000000000")
        c = Container(settings)
        c.start()
        admin = Principal(tenant_id="default", user="admin", role=Role.admin)
        t0 = time.perf_counter()
        for row in corpus:
            text = f"{row.get('title', '')}\n\n{row['text']}".strip()
            meta = DocumentMetadata(doc_id=row["_id"], title=row.get("title") or row["_id"], acl=["tenant:*"])
            upload = Upload(text.encode(), f"{row['_id']}.txt", "text/plain")
            while True:
                try:
                    c.documents.submit(admin, upload, meta)
                    break
                except RateLimited:  # backpressure: wait like a well-behaved client
                    time.sleep(0.5)
        submit_s = time.perf_counter() - t0
        c.runner.wait_idle(timeout=3600)
        pipeline_s = time.perf_counter() - t0
        from core.models import AccessScope

        scope = AccessScope.of(admin)
        texts = []
        for row in corpus:
            texts.extend(h.payload["text"] for h in c.index.chunks_of(scope, row["_id"]))
        failed = len(corpus) - len({r["_id"] for r in corpus if c.index.chunks_of(scope, r["_id"])})
        t1 = time.perf_counter()
        c.embedder.embed_documents(texts)
        raw_s = time.perf_counter() - t1
        tokens = [c.embedder.count_tokens(t) for t in texts[:2000]]
        c.close()
    result = {
        "benchmark": "ingest",
        "corpus": "scifact",
        "docs": len(corpus),
        "docs_failed": failed,
        "chunks": len(texts),
        "chunk_tokens_median": statistics.median(tokens) if tokens else 0,
        "pipeline_seconds": round(pipeline_s, 2),
        "of_which_accepting_uploads_seconds": round(submit_s, 2),
        "pipeline_docs_per_s": round(len(corpus) / pipeline_s, 1),
        "pipeline_chunks_per_s": round(len(texts) / pipeline_s, 1),
        "raw_embed_chunks_per_s": round(len(texts) / raw_s, 1),
        "ratio_pipeline_to_raw_embedding": round(raw_s / pipeline_s, 3),
        "target_ratio": 0.8,
        "precision": precision_comparison(texts[:512]),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
