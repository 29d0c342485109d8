"""`cairn reindex [--wait] | --status | --rollback | --cleanup`: talks to the running server over
HTTP (it owns the index), with an admin key."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import httpx

from core.settings import get_settings


def _print_status(body: dict[str, Any]) -> None:
    print(f"alias {body['alias']}: serving {body['serving']}, kept for rollback: {body['previous'] or '-'}")
    for run in body["runs"][:5]:
        print(f"  {run['id']}  {run['status']:<8} {run['source'] or '?'} -> {run['target'] or '?'}  "
              f"{run['done_docs']}/{run['total_docs']} documents, {run['chunks']} chunks"
              + (f"  ({run['error']})" if run["error"] else ""))


def cmd_reindex(args: argparse.Namespace) -> int:
    from app.cli import _key

    settings = get_settings()
    headers = {"Authorization": f"Bearer {_key(settings, args.key)}"}
    with httpx.Client(base_url=args.url or settings.url, headers=headers, timeout=120) as client:
        if args.status or args.rollback or args.cleanup:
            path = "/v1/admin/reindex" + ("/rollback" if args.rollback else "/cleanup" if args.cleanup else "")
            r = client.get(path) if args.status else client.post(path)
            if r.status_code >= 400:
                print(r.json().get("error", {}).get("message", r.text), file=sys.stderr)
                return 1
            _print_status(r.json())
            return 0
        r = client.post("/v1/admin/reindex")
        if r.status_code >= 400:
            print(r.json().get("error", {}).get("message", r.text), file=sys.stderr)
            return 1
        job_id = r.json()["id"]
        print(f"reindex {job_id} queued")
        if not args.wait:
            return 0
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            eta = f", about {job['eta_s']:.0f} s left" if job.get("eta_s") is not None else ""
            print(f"  {job['state']}: {job.get('done') or 0}/{job.get('total') or '?'} documents{eta}", flush=True)
            if job["state"] in ("succeeded", "failed"):
                if job["state"] == "failed":
                    print(job["error"], file=sys.stderr)
                    return 1
                _print_status(client.get("/v1/admin/reindex").json())
                return 0
            time.sleep(args.interval)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("reindex", help="rebuild the index into a new generation and swap it in (zero downtime)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true", help="show the serving / kept generations and recent runs")
    what.add_argument("--rollback", action="store_true", help="serve the kept previous generation again")
    what.add_argument("--cleanup", action="store_true", help="drop the generation kept for rollback")
    p.add_argument("--wait", action="store_true", help="follow the job until it has finished")
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--url")
    p.add_argument("--key")
    p.set_defaults(fn=cmd_reindex)
