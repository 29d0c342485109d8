"""Query-embedding latency while the same process ingests, by torch intra-op thread count.

    .venv/bin/python benchmarks/embed_load.py

The embedded default embeds queries (request threads) and documents (ingestion worker threads) in
one process, and a host often runs more than Cairn. Each torch call fans out over
`torch.get_num_threads()` OpenMP threads; when other work holds a core, a parallel region waits
for its descheduled peer thread. This measures, in one run, query-embedding p50/p95 in three
conditions: the process otherwise idle; one ingestion thread embedding SciFact abstracts (batches
of 32) in the same process; and a neighbour process spinning on one core. Each at the torch
default (one thread per core) and at one thread (`CAIRN_EMBEDDING__TORCH_THREADS`), with the
ingestion thread's documents/s. Prints JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import torch
from _scifact import load_scifact, percentiles

from retrieval.embedder import SentenceTransformerEmbedder

QUERIES = 60
DOC_BATCH = 32


def query_latencies(embedder: SentenceTransformerEmbedder, texts: list[str]) -> list[float]:
    samples = []
    for t in texts:
        t0 = time.perf_counter()
        embedder.embed_query(t)
        samples.append(1000 * (time.perf_counter() - t0))
    return samples


def with_neighbour(embedder: SentenceTransformerEmbedder, queries: list[str]) -> dict[str, float]:
    """Query latencies while another process keeps one core busy."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        return percentiles(query_latencies(embedder, queries))
    finally:
        spin.kill()
        spin.wait()


def measure(embedder: SentenceTransformerEmbedder, queries: list[str], docs: list[str]) -> dict[str, Any]:
    idle = percentiles(query_latencies(embedder, queries))
    neighbour = with_neighbour(embedder, queries)
    stop = threading.Event()
    embedded = [0]

    def ingest() -> None:
        at = 0
        while not stop.is_set():
            batch = [docs[(at + i) % len(docs)] for i in range(DOC_BATCH)]
            embedder.embed_documents(batch)
            embedded[0] += len(batch)
            at += DOC_BATCH

    worker = threading.Thread(target=ingest, daemon=True)
    t0 = time.perf_counter()
    worker.start()
    time.sleep(1.0)  # let the ingestion thread get going
    loaded = percentiles(query_latencies(embedder, queries))
    stop.set()
    worker.join()
    return {
        "idle": idle,
        "while_ingesting": loaded,
        "busy_neighbour_process": neighbour,
        "ingesting_vs_idle_p50": round(loaded["p50_ms"] / idle["p50_ms"], 2),
        "neighbour_vs_idle_p95": round(neighbour["p95_ms"] / idle["p95_ms"], 2),
        "ingest_docs_per_s": round(embedded[0] / (time.perf_counter() - t0), 1),
    }


def main() -> None:
    ds = load_scifact("test")
    queries = [ds.queries[q] for q in sorted(ds.queries)][:QUERIES]
    docs = [d.full_text for d in list(ds.corpus.values())[:2000]]
    embedder = SentenceTransformerEmbedder()
    embedder.warm_up()
    default_threads = torch.get_num_threads()
    result: dict[str, Any] = {"cpus": os.cpu_count(), "queries": len(queries)}
    for threads in (default_threads, 1):
        torch.set_num_threads(threads)
        query_latencies(embedder, queries[:5])  # warm this thread count
        result[f"torch_threads_{threads}"] = measure(embedder, queries, docs)
    a, b = result[f"torch_threads_{default_threads}"], result["torch_threads_1"]
    for cond in ("idle", "while_ingesting", "busy_neighbour_process"):
        for pct in ("p50_ms", "p95_ms"):
            result[f"one_thread_vs_default_{cond}_{pct[:3]}"] = round(b[cond][pct] / a[cond][pct], 3)
    result["one_thread_vs_default_ingest_rate"] = round(b["ingest_docs_per_s"] / a["ingest_docs_per_s"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
