"""Workflow runs over HTTP: timelines, visibility, human review, and resuming after a restart."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core.llm import Completion, CompletionRequest
from tests.app.api import ADMIN, Api

pytestmark = pytest.mark.integration

REFUND = (
    "Refund policy. Customers may request a full refund within 30 days of purchase. "
    "Refunds are issued to the original payment method within five business days."
)
SECURITY = (
    "Security handbook. Laptops must use full-disk encryption. Passwords are rotated every 90 days. "
    "Report phishing attempts to the security team immediately."
)
DRESS_CODE = "Is there a dress code for the office?"


@pytest.fixture
def api(make_container):  # type: ignore[no-untyped-def]
    with TestClient(create_app(container=make_container())) as client:
        api = Api(client)
        api.ingest("refunds.txt", REFUND, acl=["tenant:*"])
        api.ingest("security.txt", SECURITY, acl=["tenant:*"])
        yield api


def test_grounded_answer_run_timeline(api: Api) -> None:
    body = api.answer("How often are passwords rotated?")
    run = api.run(body["run_id"])
    assert run["status"] == "succeeded" and run["workflow"] == "grounded_qa" and run["version"] == 1
    assert run["started_by"] == "admin" and run["question"] == "How often are passwords rotated?"
    steps = {s["id"]: s for s in run["steps"]}
    assert [s["id"] for s in run["steps"]] == ["gather", "generate", "verify"]
    assert all(s["status"] == "completed" and s["attempts"] == 1 for s in run["steps"])
    assert steps["gather"]["retrieved"] == 2
    gen = steps["generate"]
    assert (gen["model"], gen["provider"]) == ("accurate", "local")
    assert gen["usage"]["input_tokens"] > 0 and gen["usage"]["output_tokens"] > 0
    assert gen["usage"]["cost_usd"] == 0.0
    assert steps["verify"]["passed"] is True and steps["verify"]["model"] is None
    assert all(s["duration_ms"] >= 0 for s in run["steps"]) and run["duration_ms"] >= 0
    assert [(e["seq"], e["kind"]) for e in run["events"]] == [(0, "completed"), (1, "completed"), (2, "completed")]
    assert run["usage"]["calls"] == 1 and run["usage"]["input_tokens"] == gen["usage"]["input_tokens"]
    assert run["result"]["answer"] == body["answer"] and run["result"]["citations"] == body["citations"]
    assert "chunks" not in str(run["steps"])  # retrieved texts stay out of the timeline


def test_run_is_visible_only_to_its_starter_and_admins(api: Api) -> None:
    alice = api.new_key("alice")
    bob = api.new_key("bob")
    run_id = alice.answer("How often are passwords rotated?")["run_id"]
    assert alice.run(run_id)["started_by"] == "alice"
    assert api.run(run_id)["started_by"] == "alice"  # the tenant admin
    r = bob.client.get(f"/v1/runs/{run_id}", headers=bob.headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert bob.client.get("/v1/runs/no-such-run", headers=bob.headers).status_code == 404
    listed = bob.client.get("/v1/runs", headers=bob.headers).json()
    assert listed["count"] == 0
    assert [r["id"] for r in alice.client.get("/v1/runs", headers=alice.headers).json()["data"]] == [run_id]


def test_support_assistant_waits_for_review_then_approve(api: Api) -> None:
    agent = api.new_key("agent", ["support"], role="editor")
    body = agent.answer(DRESS_CODE, workflow="support_assistant", inputs={"history": "Asked about holidays."})
    assert body["status"] == "awaiting_review" and body["workflow"] == "support_assistant"
    run_id = body["run_id"]

    run = agent.run(run_id)
    assert run["status"] == "awaiting_review"
    assert run["awaiting_review"]["step"] == "human" and run["awaiting_review"]["target"] == "draft"
    assert run["inputs"]["history"] == "Asked about holidays."
    status = {s["id"]: s["status"] for s in run["steps"]}
    assert status == {
        "knowledge": "completed",
        "history": "skipped",  # no customer_id: no customer history to gather
        "analyze": "completed",
        "draft": "completed",
        "review": "completed",
        "gate": "completed",
        "human": "paused",
    }
    assert {s["model"] for s in run["steps"] if s["type"] == "generate"} == {"long-context", "fast", "accurate"}
    assert run["usage"]["calls"] == 3
    waiting = agent.client.get("/v1/runs", headers=agent.headers, params={"status": "awaiting_review"})
    assert [r["id"] for r in waiting.json()["data"]] == [run_id]

    reader = api.new_key("rita")
    r = reader.client.post(f"/v1/runs/{run_id}/review", headers=reader.headers, json={"action": "approve"})
    assert r.status_code == 404  # not hers to see, so not hers to review
    r = agent.client.post(f"/v1/runs/{run_id}/review", headers=agent.headers, json={"action": "maybe"})
    assert r.status_code == 422

    r = agent.client.post(
        f"/v1/runs/{run_id}/review", headers=agent.headers, json={"action": "approve", "comment": "fine"}
    )
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "succeeded" and done["awaiting_review"] is None
    human = next(s for s in done["steps"] if s["id"] == "human")
    assert human["status"] == "completed"
    assert human["review"] == {"action": "approve", "reviewer": "agent", "comment": "fine"}
    assert [e["kind"] for e in done["events"]][-2:] == ["reviewed", "completed"]
    assert done["usage"]["calls"] == 3  # the review copies the draft; it is not another model call
    assert done["result"]["status"] == "succeeded"

    again = agent.client.post(f"/v1/runs/{run_id}/review", headers=agent.headers, json={"action": "approve"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


def test_review_edit_is_verified_and_readers_cannot_review(api: Api) -> None:
    reader = api.new_key("rita")
    own = reader.answer(DRESS_CODE, workflow="support_assistant")["run_id"]
    r = reader.client.post(f"/v1/runs/{own}/review", headers=reader.headers, json={"action": "approve"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"

    run_id = api.answer(DRESS_CODE, workflow="support_assistant")["run_id"]
    sources = [c for c in api.run(run_id)["steps"] if c["id"] == "knowledge"]
    assert sources[0]["retrieved"] == 2
    r = api.client.post(f"/v1/runs/{run_id}/review", headers=api.headers, json={"action": "edit"})
    assert r.status_code == 422  # an edit needs its text
    assert not [e for e in api.run(run_id)["events"] if e["kind"] == "reviewed"]  # and nothing was logged
    edited = "There is no dress code. Report phishing attempts to the security team immediately [1] [2]."
    r = api.client.post(f"/v1/runs/{run_id}/review", headers=api.headers, json={"action": "edit", "text": edited})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["status"] == "succeeded" and not result["abstained"]
    # the reviewer's markers are checked against the same sources: [2] does not support the claim
    assert [(c["title"], c["supported"]) for c in result["citations"]] == [
        ("security.txt", True),
        ("refunds.txt", False),
    ]
    assert result["citations"][0]["quote"] == "Report phishing attempts to the security team immediately."


class StalledModel:
    """A model that never answers: the process is 'killed' while the generate step waits.
    `called` is set once generate has reached the model, i.e. gather is done and logged."""

    name = "local"

    def __init__(self) -> None:
        self.called = threading.Event()

    async def complete(self, req: CompletionRequest) -> Completion:
        self.called.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def stream(self, req: CompletionRequest) -> AsyncIterator[str]:
        await asyncio.Event().wait()
        yield ""


def wait_for_status(api: Api, run_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.run(run_id)
        if run["status"] == status:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} is still {run['status']}")


def test_interrupted_run_resumes_after_restart(make_container, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "persist"
    first = make_container(data_dir)
    with TestClient(create_app(container=first)) as client:
        Api(client).ingest("refunds.txt", REFUND, acl=["tenant:*"])
    admin = first.keys.authenticate(ADMIN)
    stalled = first.gateway.providers["local"] = StalledModel()

    async def killed_mid_generate() -> None:
        task = asyncio.create_task(first.answers.answer(admin, "How many days do customers have to request a refund?"))
        while not stalled.called.is_set():  # however slow the machine, stop only inside generate
            assert not task.done(), task
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(killed_mid_generate())
    [run] = first.runs.list_runs(status="running")
    assert [(e.step_id, e.kind) for e in first.runs.events(run.id)] == [("gather", "completed")]
    first.close()

    second = make_container(data_dir)  # a new process on the same data: start-up resumes the run
    with TestClient(create_app(container=second)) as client:
        resumed = wait_for_status(Api(client), run.id, "succeeded")
    assert [(e["step_id"], e["kind"]) for e in resumed["events"]] == [
        ("gather", "completed"),  # replayed from the log, not retrieved again
        ("generate", "completed"),
        ("verify", "completed"),
    ]
    result = resumed["result"]
    assert not result["abstained"] and "30 days" in result["answer"]
    assert result["citations"][0]["title"] == "refunds.txt"
