"""A thin test client speaking Cairn's HTTP API the way a user's script would."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi.testclient import TestClient

ADMIN = "test-admin-key"


class Api:
    def __init__(self, client: TestClient, key: str = ADMIN) -> None:
        self.client = client
        self.key = key

    def as_key(self, key: str) -> Api:
        return Api(self.client, key)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def new_key(self, user: str, groups: list[str] | None = None, role: str = "reader") -> Api:
        body = {"user": user, "groups": groups or [], "role": role}
        r = self.client.post("/v1/keys", headers=self.headers, json=body)
        assert r.status_code == 201, r.text
        return self.as_key(r.json()["key"])

    def upload(self, name: str, data: bytes, meta: dict[str, Any] | None = None, ctype: str = "text/plain"):  # type: ignore[no-untyped-def]
        form = {} if meta is None else {"metadata": json.dumps(meta)}
        return self.client.post("/v1/documents", headers=self.headers, files={"file": (name, data, ctype)}, data=form)

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/jobs/{job_id}", headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.job(job_id)
            if body["state"] in ("indexed", "failed"):
                return body
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish: {body}")

    def ingest(self, name: str, text: str, **meta: Any) -> dict[str, Any]:
        r = self.upload(name, text.encode(), {"title": name, **meta})
        assert r.status_code in (200, 202), r.text
        body = r.json()
        done = self.wait(body["job_id"])
        assert done["state"] == "indexed", done
        return body

    def search(self, query: str, top_k: int = 5, **extra: Any) -> list[dict[str, Any]]:
        r = self.client.post("/v1/search", headers=self.headers, json={"query": query, "top_k": top_k, **extra})
        assert r.status_code == 200, r.text
        return r.json()["results"]

    # ---- answers and runs -------------------------------------------------------------------

    def answer(self, question: str, **extra: Any) -> dict[str, Any]:
        r = self.client.post("/v1/answers", headers=self.headers, json={"question": question, **extra})
        assert r.status_code == 200, r.text
        return r.json()

    def answer_events(self, question: str, **extra: Any) -> list[tuple[str, Any]]:
        """POST /v1/answers with `stream: true`: the (event, data) pairs in order."""
        body = {"question": question, "stream": True, **extra}
        with self.client.stream("POST", "/v1/answers", headers=self.headers, json=body) as r:
            assert r.status_code == 200, r.read()
            assert r.headers["content-type"].startswith("text/event-stream")
            return parse_sse("".join(r.iter_text()))

    def run(self, run_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/runs/{run_id}", headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """Server-sent events -> (event name, JSON data); `message` when an event has no name."""
    events: list[tuple[str, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        raw = "\n".join(data)
        events.append((name, raw if raw == "[DONE]" else json.loads(raw)))
    return events
