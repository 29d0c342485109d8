"""`cairn eval beir PATH`: evaluate retrieval configurations on a BEIR folder, offline.

Why in-process on a temporary data directory rather than against the server: the embedded engine
admits one process per data directory and a running server holds that lock, and an evaluation
corpus has no business in the production index anyway. The CLI therefore starts its own Container
on a fresh temp dir (SQLite + embedded engine, deleted afterwards) and drives the very same
services the HTTP API uses — ingestion jobs, the eval job runner, the stored per-query scores — so
its numbers are the server's numbers. To evaluate the live corpus instead, use the API
(`POST /v1/eval-datasets/attached`, `POST /v1/evals`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.settings import get_settings


def cmd_eval_beir(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.container import Container
    from app.eval_report import render_html
    from app.services import eval_scoring
    from app.services.evals import EvalCreate
    from core.models import Principal, Role
    from retrieval.evaluation import load_beir

    root = Path(args.path)
    ds = load_beir(root, args.split)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    ks = sorted({int(k) for k in args.ks.split(",")})
    out = Path(args.out or f"cairn-eval-{root.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="cairn-eval-") as tmp:
        settings = get_settings().model_copy(
            update={"data_dir": Path(tmp), "database_url": None, "qdrant_url": None, "admin_key": None}
        )
        container = Container(settings)
        print(f"Cairn eval: loading the model; temporary data dir {tmp}", flush=True)
        container.start()
        try:
            principal = Principal(tenant_id=settings.default_tenant, user="eval", role=Role.admin)
            t0 = time.perf_counter()
            with tqdm(total=len(ds.corpus), desc="submit", unit="doc") as bar:
                dataset = container.eval_datasets.create_collection(
                    principal, root.name, ds, on_submitted=lambda n: bar.update(n - bar.n)
                )
            with tqdm(total=dataset.doc_count, desc="ingest", unit="doc") as bar:
                while True:
                    states = container.eval_datasets.document_states(container.eval_datasets.load(principal,
                                                                                                  dataset.id))
                    bar.update(states.get("indexed", 0) + states.get("failed", 0) - bar.n)
                    if states.get("queued", 0) == 0:
                        break
                    time.sleep(0.5)
            ingest_s = time.perf_counter() - t0
            if states.get("failed"):
                tqdm.write(f"{states['failed']} documents failed to ingest; they count as not found")

            t0 = time.perf_counter()
            run = container.evals.create(
                principal, EvalCreate(dataset_id=dataset.id, configs=configs, ks=ks, max_queries=args.max_queries)
            )
            with tqdm(total=100, desc="evaluate", unit="%") as bar:
                while run.status not in ("succeeded", "failed"):
                    time.sleep(0.3)
                    run = container.evals.get(principal, run.id)
                    bar.update(round(run.progress * 100) - bar.n)
            eval_s = time.perf_counter() - t0
            if run.status == "failed":
                print(f"evaluation failed: {run.error}")
                return 1
            rows = container.evals.queries(principal, run.id, limit=10**9).data
        except KeyboardInterrupt:
            # closing would first ingest everything still queued; the temp dir is throwaway
            print("\ninterrupted; discarding the temporary data dir", file=sys.stderr, flush=True)
            shutil.rmtree(tmp, ignore_errors=True)
            os._exit(130)
        finally:
            container.close()

    metric = eval_scoring.primary_metric(ks)
    per_query: dict[str, dict[str, Any]] = {}
    for r in rows:
        per_query.setdefault(r.config, {})[r.query_id] = {
            "query": r.query, "metrics": r.metrics, "ranked": r.ranked[:10], "latency_ms": r.latency_ms,
        }
    report = {
        "dataset": {"name": root.name, "path": str(root.resolve()), "split": args.split,
                    "documents": dataset.doc_count, "queries": len(next(iter(per_query.values()), {}))},
        "configs": [c.model_dump() for c in run.configs],
        "ks": ks,
        "metric": metric,
        "summary": run.summary,
        "per_query": per_query,
        "timings": {"ingest_s": round(ingest_s, 2), "eval_s": round(eval_s, 2)},
        "embedding": {"precision": settings.embedding.precision},
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.html").write_text(render_html(report))
    _print_summary(run.summary, ks)
    print(f"\ningest {ingest_s:.1f} s, evaluation {eval_s:.1f} s\nwrote {out / 'report.json'} and "
          f"{out / 'report.html'}")
    return 0


def _print_summary(summary: dict[str, dict[str, float]], ks: list[int]) -> None:
    k = 10 if 10 in ks else max(ks)
    keys = [f"ndcg@{k}", f"mrr@{k}", f"recall@{max(ks)}", f"precision@{k}", f"hit_rate@{k}"]
    print("\n" + f"{'config':<16}" + "".join(f"{key:>14}" for key in keys))
    for config, values in summary.items():
        print(f"{config:<16}" + "".join(f"{values.get(key, 0.0):>14.4f}" for key in keys))


def add_parser(sub: Any) -> None:
    from app.services.eval_search import PRESETS

    p = sub.add_parser("eval", help="retrieval evaluation (offline, on a temporary data directory)")
    evsub = p.add_subparsers(dest="eval_command", required=True)
    b = evsub.add_parser("beir", help="evaluate configurations on a BEIR folder; writes JSON and HTML")
    b.add_argument("path", help="folder with corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    b.add_argument("--configs", default="sparse,dense,hybrid",
                   help="comma-separated presets: " + ", ".join(PRESETS))
    b.add_argument("--split", default="test")
    b.add_argument("--ks", default="1,10,100", help="cut-offs, e.g. 1,10,100")
    b.add_argument("--max-queries", type=int, default=None, help="score only the first N judged queries")
    b.add_argument("--out", help="output folder (default: ./cairn-eval-<name>-<time>)")
    b.set_defaults(fn=cmd_eval_beir)
