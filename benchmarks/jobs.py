"""Ingestion throughput: in-process worker threads vs 1 and 2 Celery workers, same corpus.

    .venv/bin/python benchmarks/jobs.py [--docs 150]

Starts its own redis-server on a free port. Prints JSON: docs/s per mode, each as a ratio to
the in-process run, and the queue overhead per task (send -> worker done, for a task whose job
is already finished, so no parsing or embedding is in it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import app  # noqa: E402,F401
from app.container import Container  # noqa: E402
from app.services.documents import Upload  # noqa: E402
from core.models import DocumentMetadata, Principal, Role  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.tables import Job  # noqa: E402

SCIFACT = ROOT.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
ADMIN = Principal(tenant_id="default", user="admin", role=Role.admin)


def corpus(n: int) -> list[tuple[str, str]]:
    if SCIFACT.exists():
        rows = [json.loads(line) for line, _ in zip(SCIFACT.open(), range(n), strict=False)]
        return [(r["_id"], f"{r['title']}\n\n{r['text']}") for r in rows]
    words = "refund invoice shipping warranty account password laptop contract holiday budget".split()
    return [(f"d{i}", " ".join(words[(i * 7 + j) % 10] for j in range(250)) + ".") for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_done(c: Container, job_ids: list[str], timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with c.sessions() as s:
            left = s.query(Job).filter(Job.id.in_(job_ids), Job.state.notin_(["indexed", "failed"])).count()
        if left == 0:
            return
        time.sleep(0.2)
    raise TimeoutError("jobs did not finish")


def submit_all(c: Container, docs: list[tuple[str, str]]) -> list[str]:
    return [
        c.documents.submit(ADMIN, Upload(text.encode(), f"{doc_id}.txt", "text/plain"),
                           DocumentMetadata(doc_id=doc_id, acl=["tenant:*"])).job_id
        for doc_id, text in docs
    ]


def start_workers(n: int, env: dict[str, str], logdir: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        log = logdir / f"worker{i}.log"
        procs.append(subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--queues", "ingest"], cwd=ROOT,
                                      env={**os.environ, **env}, stdout=log.open("wb"),
                                      stderr=subprocess.STDOUT, start_new_session=True))
    for i in range(n):
        log = logdir / f"worker{i}.log"
        deadline = time.monotonic() + 180
        while b" ready." not in log.read_bytes():
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {i} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
    return procs


def run_mode(docs: list[tuple[str, str]], workers: int, redis_url: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "var"
        settings = Settings(data_dir=data, admin_key="bench-admin-key-000000000000", redis_url=redis_url)
        c = Container(settings)
        c.start()
        env = {"CAIRN_DATA_DIR": str(data), "CAIRN_REDIS_URL": redis_url or ""}
        if workers > 1:  # share the cores instead of each worker's torch using all of them
            env["CAIRN_JOBS__WORKER_TORCH_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
        procs = start_workers(workers, env, Path(tmp)) if redis_url else []
        try:
            t0 = time.perf_counter()
            jobs = submit_all(c, docs)
            wait_done(c, jobs)
            seconds = time.perf_counter() - t0
            result: dict[str, Any] = {"seconds": round(seconds, 2), "docs_per_s": round(len(docs) / seconds, 2)}
            if redis_url and workers == 1:
                result["queue_overhead_ms_per_task"] = queue_overhead(c, jobs[:50])
            return result
        finally:
            for p in procs:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(30)
            c.close()


def queue_overhead(c: Container, finished_jobs: list[str]) -> float:
    """Send tasks whose jobs are already indexed (the task returns at once) and wait for the
    broker to drain: what remains is enqueue + delivery + ack per task."""
    import redis

    from app.worker import QUEUE, TASK, make_celery

    celery_app = make_celery(c.settings)
    client = redis.Redis.from_url(c.settings.redis_url or "")
    t0 = time.perf_counter()
    for job_id in finished_jobs:
        celery_app.send_task(TASK, args=[[job_id]], queue=QUEUE)
    while client.llen(QUEUE) or client.hlen("unacked"):
        time.sleep(0.002)
    return round((time.perf_counter() - t0) * 1000 / len(finished_jobs), 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=150)
    args = ap.parse_args()
    docs = corpus(args.docs)
    binary = shutil.which("redis-server")
    if binary is None:
        print(json.dumps({"skipped": "redis-server not installed"}))
        return
    port = free_port()
    redis_proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no"],
                                  stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        inproc = run_mode(docs, 0, None)
        one = run_mode(docs, 1, url)
        two = run_mode(docs, 2, url)
    finally:
        redis_proc.terminate()
    base = inproc["docs_per_s"]
    print(json.dumps({
        "benchmark": "jobs",
        "docs": len(docs),
        "corpus": "scifact" if SCIFACT.exists() else "synthetic",
        "cores": os.cpu_count(),
        "in_process": inproc,
        "celery_1_worker": {**one, "ratio_to_in_process": round(one["docs_per_s"] / base, 3)},
        "celery_2_workers": {**two, "ratio_to_in_process": round(two["docs_per_s"] / base, 3)},
    }, indent=2))


if __name__ == "__main__":
    main()
