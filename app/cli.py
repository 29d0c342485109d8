"""`cairn serve | ingest | search | eval | snapshot`. The server owns the embedded engine (one process per data
directory), so `ingest` and `search` talk to it over HTTP like any other client."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import mimetypes
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from app import cli_audit, cli_eval, cli_reindex, cli_snapshot
from core.settings import Settings, get_settings

TERMINAL = {"indexed", "failed"}


def _key(settings: Settings, given: str | None) -> str:
    key = given or settings.api_key
    if key:
        return key
    path = settings.data_dir / "admin.key"
    if path.exists():
        return path.read_text().strip()
    sys.exit("no API key: pass --key, set CAIRN_API_KEY, or run on the server's data directory")


def freeze_startup_objects() -> None:
    """Move everything loaded so far (the model, the engine, the app: ~0.8 M objects) out of the
    garbage collector's reach. Each full collection walked all of them: 380 ms with every thread
    stopped, at random moments while serving; after the freeze it walks only what requests and
    jobs allocate (~0 ms). These objects live as long as the process, so nothing is lost."""
    gc.collect()
    gc.freeze()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.container import Container
    from app.main import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = get_settings().model_copy(update={"host": args.host, "port": args.port})
    container = Container(settings)
    print("Cairn: loading the embedding model and opening the index ...", flush=True)
    container.start()
    base = f"http://{settings.host}:{settings.port}"
    if container.new_admin_key:
        print("\n  Admin API key (shown once; also saved to "
              f"{container.admin_key_path}):\n\n    {container.new_admin_key}\n")
    print(f"  Web UI:   {base}/ui\n  API:      {base}/v1\n  API docs: {base}/docs\n  Health:   {base}/healthz\n",
          flush=True)
    app = create_app(settings, container=container)
    freeze_startup_objects()
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    finally:
        container.close()
    return 0


def _files(paths: list[str]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            yield p
        else:
            print(f"skipping {p}: not found", file=sys.stderr)


def cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    settings = get_settings()
    headers = {"Authorization": f"Bearer {_key(settings, args.key)}"}
    files = list(_files(args.paths))
    jobs: dict[str, str] = {}
    failed = 0
    with httpx.Client(base_url=args.url or settings.url, headers=headers, timeout=120) as client:
        for f in tqdm(files, desc="upload", unit="file"):
            meta: dict[str, object] = {"title": f.name}
            if args.acl:
                meta["acl"] = args.acl
            if args.tags:
                meta["tags"] = args.tags
            ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
            r = client.post("/v1/documents", files={"file": (f.name, f.read_bytes(), ctype)},
                            data={"metadata": json.dumps(meta)})
            if r.status_code >= 400:
                failed += 1
                tqdm.write(f"{f}: {r.json().get('error', {}).get('message', r.text)}")
            else:
                jobs[r.json()["job_id"]] = str(f)
        with tqdm(total=len(jobs), desc="index", unit="doc") as bar:
            pending = set(jobs)
            while pending:
                for job_id in list(pending):
                    body = client.get(f"/v1/jobs/{job_id}").json()
                    if body["state"] in TERMINAL:
                        pending.discard(job_id)
                        bar.update(1)
                        if body["state"] == "failed":
                            failed += 1
                            tqdm.write(f"{jobs[job_id]}: failed: {body['error']}")
                if pending:
                    time.sleep(0.5)
    print(f"{len(files) - failed} indexed, {failed} failed")
    return 1 if failed else 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker: ingest jobs (solo pool) and sync / eval / reindex jobs (thread pool, a
    child process), or one of them with --queues. Needs CAIRN_REDIS_URL, the same
    CAIRN_DATABASE_URL as the API and the API's data directory (stored originals) on a shared path."""
    from app.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    if not settings.redis_url:
        sys.exit("cairn worker needs CAIRN_REDIS_URL (without it the API runs jobs in-process)")
    run_worker(settings, tuple(q.strip() for q in args.queues.split(",") if q.strip()), args.concurrency)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    settings = get_settings()
    headers = {"Authorization": f"Bearer {_key(settings, args.key)}"}
    r = httpx.post(f"{args.url or settings.url}/v1/search", headers=headers, timeout=60,
                   json={"query": args.query, "top_k": args.top_k})
    if r.status_code >= 400:
        print(r.json().get("error", {}).get("message", r.text), file=sys.stderr)
        return 1
    for i, hit in enumerate(r.json()["results"], 1):
        snippet = " ".join(hit["text"].split())[:200]
        print(f"{i}. [{hit['score']:.3f}] {hit['title']} ({hit['doc_id']})\n   {snippet}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cairn", description="Cairn knowledge server")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the API server")
    p.add_argument("--host", default=get_settings().host)
    p.add_argument("--port", type=int, default=get_settings().port)
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("ingest", help="upload files or folders and wait until they are indexed")
    p.add_argument("paths", nargs="+")
    p.add_argument("--acl", nargs="*", help="ACL principals, e.g. group:support user:alice tenant:*")
    p.add_argument("--tags", nargs="*")
    p.add_argument("--url")
    p.add_argument("--key")
    p.set_defaults(fn=cmd_ingest)
    p = sub.add_parser("worker", help="run a Celery worker for background jobs (needs CAIRN_REDIS_URL)")
    p.add_argument("--queues", default="ingest,jobs", help="ingest, jobs (sync, eval, reindex) or both")
    p.add_argument("--concurrency", type=int, default=4, help="threads for the jobs queue")
    p.set_defaults(fn=cmd_worker)
    p = sub.add_parser("search", help="hybrid search")
    p.add_argument("query")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--url")
    p.add_argument("--key")
    p.set_defaults(fn=cmd_search)
    cli_eval.add_parser(sub)
    cli_snapshot.add_parser(sub)
    cli_audit.add_parser(sub)
    cli_reindex.add_parser(sub)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
