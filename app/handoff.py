"""Worker -> index owner hand-off for the embedded engine in Celery mode.

A worker pushes each embedded document version (and each document it deleted, e.g. in a
connector sync) onto a Redis list; the API process, the only one that may open the embedded
engine, pops and applies them in order (`DocumentService.finish` / `apply_unindex`). If the
API dies between pop and apply, the job stays in `embedding` and the recovery sweep sends it
through the pipeline again: applying is idempotent, so the effect is still exactly once.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from core.models import IndexPoint, SparseVector
from ingestion.pipeline import VersionRef

log = logging.getLogger(__name__)
READY_KEY = "cairn:ready"


def encode_ready(ready: Any) -> bytes:
    """ReadyVersion -> JSON; dense vectors as base64 float32 (a quarter of the JSON size)."""
    return json.dumps(
        {
            "job_id": ready.job_id,
            "ref": [ready.ref.tenant_id, ready.ref.doc_id, ready.ref.version, ready.ref.content_hash],
            "acl": ready.acl,
            "title": ready.title,
            "char_count": ready.char_count,
            "points": [
                {
                    "id": p.id,
                    "dense": base64.b64encode(np.asarray(p.dense, dtype=np.float32).tobytes()).decode(),
                    "sparse": [p.sparse.indices, p.sparse.values],
                    "payload": p.payload,
                }
                for p in ready.points
            ],
        }
    ).encode()


def decode_ready(raw: bytes) -> Any:
    from app.services.documents import ReadyVersion

    d = json.loads(raw)
    return ReadyVersion(
        job_id=d["job_id"],
        ref=VersionRef(*d["ref"]),
        points=[
            IndexPoint(
                id=p["id"],
                dense=np.frombuffer(base64.b64decode(p["dense"]), dtype=np.float32).tolist(),
                sparse=SparseVector(indices=p["sparse"][0], values=p["sparse"][1]),
                payload=p["payload"],
            )
            for p in d["points"]
        ],
        acl=d["acl"],
        title=d["title"],
        char_count=d["char_count"],
    )


def push_ready(redis_client: Any, ready: list[Any]) -> None:
    if ready:
        redis_client.rpush(READY_KEY, *(encode_ready(r) for r in ready))


def push_unindex(redis_client: Any, job_id: str) -> None:
    """A deletion made on a worker: on the same list as versions, so the owner applies them in
    order. The job row was committed with the deletion; if this push is lost, the recovery sweep
    applies it (`DocumentService.apply_unindex`)."""
    redis_client.rpush(READY_KEY, json.dumps({"unindex": job_id}).encode())


class IndexApplier:
    """API-side consumer of the hand-off list, on its own thread."""

    def __init__(
        self, redis_client: Any, finish: Callable[[Any], None], unindex: Callable[[str], None] = lambda _job: None
    ) -> None:
        self._redis = redis_client
        self._finish = finish
        self._unindex = unindex
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cairn-index-applier", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._redis.blpop([READY_KEY], timeout=1)
            except Exception:
                log.warning("index hand-off: Redis unavailable; retrying", exc_info=True)
                self._stop.wait(1.0)
                continue
            if item is None:
                continue
            try:
                if item[1].startswith(b'{"unindex"'):
                    self._unindex(json.loads(item[1])["unindex"])
                else:
                    self._finish(decode_ready(item[1]))
            except Exception:
                log.exception("index hand-off: could not apply a version; the sweep will redo its job")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
