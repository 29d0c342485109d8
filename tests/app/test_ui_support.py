"""The support desk, review queue, evaluation reports and answer feedback, driven in the real
headless Chromium against a real uvicorn server (same set-up as tests/app/test_ui_browser.py),
with the local extractive model: nothing here is faked."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app import beir_fixture
from tests.app.api import ADMIN, Api
from tests.app.test_ui_browser import REFUND, _shot, browser, server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration

SECURITY = (
    "Security handbook. Laptops must use full-disk encryption. Passwords are rotated every 90 days. "
    "Report phishing attempts to the security team immediately."
)
CONFIDENT = ("Refund window", "How many days do customers have to request a full refund?")
# the extractive model finds no supported answer: the quality gate fails and a human decides
WEAK = ("Charged twice", "I was charged twice for my order. Can I get my money back, and how long will it take?")


def _watch(page: Any) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    return problems


def _sign_in(page: Any, base: str, key: str, view: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base}/ui/#/{view}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#principal")).not_to_be_empty()


def _ingest(http: httpx.Client, headers: dict[str, str], name: str, text: str) -> None:
    sent = http.post(
        "/v1/documents",
        headers=headers,
        files={"file": (name, text.encode(), "text/plain")},
        data={"metadata": json.dumps({"title": name, "acl": ["tenant:*"]})},
    )
    assert sent.status_code == 202, sent.text
    for _ in range(600):
        if http.get(f"/v1/jobs/{sent.json()['job_id']}", headers=headers).json()["state"] == "indexed":
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} was not indexed")


def _paused_ticket(http: httpx.Client, headers: dict[str, str], subject: str, body: str) -> dict[str, Any]:
    ticket = {"customer_id": "acme-7", "subject": subject, "body": body}
    r = http.post("/v1/support/tickets", headers=headers, json=ticket)
    assert r.status_code == 202, r.text
    for _ in range(600):
        t = http.get(f"/v1/support/tickets/{r.json()['run']['id']}", headers=headers).json()
        if t["run"]["status"] != "running":
            assert t["run"]["status"] == "awaiting_review", t["run"]
            return dict(t)
        time.sleep(0.05)
    raise AssertionError("the ticket run did not pause")


def test_support_ticket_steps_review_inline_and_review_queue(browser: Any, server: str) -> None:  # noqa: F811
    from playwright.sync_api import expect

    admin = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=server, timeout=60) as http:
        _ingest(http, admin, "refunds.md", REFUND)
        _ingest(http, admin, "security.txt", SECURITY)
        made = http.post("/v1/keys", headers=admin, json={"user": "agent", "groups": ["support"], "role": "editor"})
        agent = {"Authorization": f"Bearer {made.json()['key']}"}

    page = browser.new_page()
    problems = _watch(page)
    _sign_in(page, server, made.json()["key"], "support")
    expect(page.get_by_role("heading", name="Support", exact=True)).to_be_visible()

    # a ticket the knowledge base answers: every step's output, then the cited final draft
    page.get_by_label("Customer id").fill("acme-42")
    page.get_by_label("Subject").fill(CONFIDENT[0])
    page.get_by_label("Message").fill(CONFIDENT[1])
    page.get_by_role("button", name="Run assistant").click()
    desk = page.locator("#ticket .desk")
    expect(desk.locator("[data-run-status]")).to_have_text("succeeded", timeout=30_000)
    for step in ("knowledge", "analyze", "draft", "review", "gate"):
        expect(desk.locator(f'li[data-step="{step}"]')).to_have_attribute("data-status", "completed")
    expect(desk.locator('li[data-step="knowledge"]')).to_contain_text("2 sources found")
    expect(desk.locator('li[data-step="analyze"] .step-text')).to_contain_text("30 days")
    expect(desk.locator('li[data-step="gate"]')).to_contain_text("passed")
    expect(desk.locator('li[data-step="human"]')).to_have_attribute("data-status", "skipped")
    draft = desk.locator(".draft")
    expect(draft.get_by_role("heading", name="Final draft")).to_be_visible()
    expect(draft.locator("[data-draft]")).to_contain_text("30 days")
    expect(draft.locator("button.cite").first).to_have_text("[1]")
    expect(draft.locator(".citations li").first).to_contain_text("refunds.md")
    expect(draft.locator(".citations mark").first).to_contain_text("30 days")
    expect(desk).to_contain_text("customer acme-42")
    expect(desk.locator(".review")).to_have_count(0)
    _shot(page, "8-support-answered")

    # a ticket it cannot answer: the gate fails, the run waits, the agent approves inline
    page.get_by_label("Subject").fill(WEAK[0])
    page.get_by_label("Message").fill(WEAK[1])
    page.get_by_label("Customer history (optional)").fill("Asked about shipping last week.")
    page.get_by_role("button", name="Run assistant").click()
    expect(desk.locator("[data-run-status]")).to_have_text("awaiting review", timeout=30_000)
    expect(desk.locator('li[data-step="gate"]')).to_contain_text("failed")
    expect(desk.locator('li[data-step="gate"]')).to_contain_text("groundedness")
    expect(desk.locator('li[data-step="human"]')).to_have_attribute("data-status", "paused")
    review = desk.locator(".review")
    expect(review.get_by_role("button", name="Approve")).to_be_visible()
    _shot(page, "9-support-review")
    review.get_by_label("Comment").fill("no policy covers this; escalate")
    review.get_by_role("button", name="Approve").click()
    expect(page.locator("#status")).to_contain_text("Review recorded: approve; the run is succeeded")
    expect(desk.locator("[data-run-status]")).to_have_text("succeeded")
    expect(desk.locator('li[data-step="human"]')).to_have_attribute("data-status", "completed")
    expect(desk.locator(".review")).to_have_count(0)

    # the review queue: two drafts wait; one is edited (its markers verified), one rejected
    with httpx.Client(base_url=server, timeout=60) as http:
        to_edit = _paused_ticket(http, agent, "Money back", "When does the refund for my order arrive?")
        _paused_ticket(http, agent, "Dress code", "Is there a dress code for the office?")
    refunds_n = next(s["n"] for s in to_edit["draft"]["sources"] if s["title"] == "refunds.md")
    page.get_by_role("link", name="Review queue").click()
    expect(page.get_by_role("heading", name="Review queue")).to_be_focused()
    queue = page.locator("#reviews li")
    expect(queue).to_have_count(2)
    queue.filter(has_text="Money back").get_by_role("button").click()
    qdesk = page.locator("#review-desk .desk")
    expect(qdesk.locator("[data-run-status]")).to_have_text("awaiting review")
    qdesk.get_by_role("button", name="Edit").click()
    editor = qdesk.get_by_label("Edited reply")
    expect(editor).to_be_focused()
    expect(qdesk.locator(".edit-box ol")).to_contain_text("refunds.md")
    editor.fill(f"Refunds are issued to the original payment method within five business days [{refunds_n}].")
    qdesk.get_by_role("button", name="Save edit").click()
    expect(qdesk.locator("[data-run-status]")).to_have_text("succeeded")
    expect(qdesk.locator("[data-draft]")).to_contain_text("five business days")
    expect(qdesk.locator(".citations li").first).to_contain_text("refunds.md")
    expect(qdesk.locator(".citations li").first).not_to_contain_text("weak support")
    expect(queue).to_have_count(1)
    assert "null" not in qdesk.inner_text() and "undefined" not in qdesk.inner_text()
    _shot(page, "10-review-queue")
    queue.first.get_by_role("button").click()
    qdesk.get_by_role("button", name="Reject").click()
    expect(qdesk.locator("[data-run-status]")).to_have_text("rejected")
    expect(qdesk).to_contain_text("reason: rejected by agent")
    expect(qdesk.locator(".draft")).to_have_count(0)
    expect(page.locator("#reviews-empty")).to_be_visible()
    assert problems == [], problems


def test_evaluations_view_charts_baseline_regression_and_compare(browser: Any, server: str) -> None:  # noqa: F811
    from playwright.sync_api import expect

    admin = {"Authorization": f"Bearer {ADMIN}"}

    def run_eval(http: httpx.Client, dataset_id: str) -> dict[str, Any]:
        body = {"dataset_id": dataset_id, "configs": ["sparse", "hybrid"], "ks": [1, 10], "regression_threshold": 0.05}
        r = http.post("/v1/evals", headers=admin, json=body)
        assert r.status_code == 202, r.text
        for _ in range(1200):
            run = http.get(f"/v1/evals/{r.json()['id']}", headers=admin).json()
            if run["status"] in ("succeeded", "failed"):
                assert run["status"] == "succeeded", run
                return dict(run)
            time.sleep(0.1)
        raise AssertionError("the evaluation did not finish")

    with httpx.Client(base_url=server, timeout=60) as http:
        files = [("files", (n, d, "application/octet-stream")) for n, d in beir_fixture.files().items()]
        ds = http.post("/v1/eval-datasets", headers=admin, files=files, data={"name": "tiny"}).json()
        first = run_eval(http, ds["id"])

    page = browser.new_page()
    problems = _watch(page)
    _sign_in(page, server, ADMIN, "evals")
    row = page.locator(f'#evals tr[data-eval="{first["id"]}"]')
    expect(row).to_contain_text("succeeded")
    row.get_by_role("button", name=ds["id"]).click()
    chart = page.locator("#eval-chart svg[role=img]")
    expect(chart).to_be_visible()
    assert "ndcg@10" in (chart.get_attribute("aria-label") or "")
    bars = page.locator("#eval-chart rect.bar[data-config]")
    expect(bars).to_have_count(6)  # 2 configurations x nDCG@10, MRR@10, Recall@10
    hybrid = first["summary"]["hybrid"]
    expect(page.locator('#eval-table tr[data-config="hybrid"]')).to_contain_text(f"{hybrid['ndcg@10']:.3f}")
    page.get_by_role("button", name="Mark as baseline").click()
    expect(row).to_contain_text("baseline")
    expect(page.get_by_role("button", name="Mark as baseline")).to_be_hidden()

    # the corpus loses q1's only relevant document: the next run regresses against the baseline
    with httpx.Client(base_url=server, timeout=60) as http:
        assert http.delete(f"/v1/documents/eval-{ds['id']}-d01", headers=admin).status_code == 204
        worse = run_eval(http, ds["id"])
    assert worse["regressed"]
    page.get_by_role("button", name="Refresh").click()
    row2 = page.locator(f'#evals tr[data-eval="{worse["id"]}"]')
    expect(row2.locator(".chip.regressed")).to_have_text("regressed")
    row2.get_by_role("button", name=ds["id"]).click()
    expect(page.locator("#eval-meta")).to_contain_text(f"checked against baseline {first['id']}")
    expect(page.locator("#eval-meta")).not_to_contain_text("null")
    expect(page.locator("#eval-regressions li").first).to_contain_text("below the baseline")
    expect(page.locator('#eval-chart rect.bar.regressed[data-config="hybrid"][data-metric="ndcg@10"]')).to_have_count(1)
    expect(page.locator("#compare-with")).to_have_value(first["id"])
    page.get_by_role("button", name="Compare").click()
    delta = page.locator('#compare-out figure[data-config="hybrid"]')
    expect(delta.locator('rect.bar.down[data-query="q1"]')).to_have_count(1)
    expect(page.locator('#compare-out tr[data-config="hybrid"] td.regressed').first).to_contain_text("-0.167")
    _shot(page, "11-evaluations")
    assert problems == [], problems


def test_answer_feedback_thumbs_then_dashboard_thresholds_cost_and_ingestion(
    browser: Any,  # noqa: F811
    server: str,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    admin = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=server, timeout=60) as http:
        _ingest(http, admin, "refunds.md", REFUND)
        broken = http.post(
            "/v1/documents",
            headers=admin,
            files={"file": ("broken.pdf", b"%PDF-1.7\n" + b"\x00junk" * 50, "application/pdf")},
            data={"metadata": json.dumps({"title": "broken.pdf"})},
        )
        assert broken.status_code == 202, broken.text
        for _ in range(600):
            if http.get(f"/v1/jobs/{broken.json()['job_id']}", headers=admin).json()["state"] == "failed":
                break
            time.sleep(0.05)

    page = browser.new_page()
    problems = _watch(page)
    _sign_in(page, server, ADMIN, "ask")

    # thumbs under an answer: POST /v1/answers/{run_id}/feedback {"rating", "reason"}, then thanks
    page.get_by_label("Question").fill(CONFIDENT[1])
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer button.cite").first).to_be_visible(timeout=60_000)
    feedback = page.get_by_role("group", name="Was this answer helpful?")
    expect(feedback).to_be_visible()
    feedback.get_by_label("Reason (optional)").fill("missing the exceptions")
    with page.expect_request("**/feedback") as sent, page.expect_response("**/feedback") as answered:
        feedback.get_by_role("button", name="Not helpful").click()
    assert json.loads(sent.value.post_data or "{}") == {"rating": "down", "reason": "missing the exceptions"}
    assert "/v1/answers/" in sent.value.url
    assert answered.value.ok, f"POST {sent.value.url} -> {answered.value.status}"
    expect(feedback.locator("#fb-done")).to_contain_text("Thanks")
    expect(feedback.get_by_role("button", name="Not helpful")).to_have_attribute("aria-pressed", "true")
    expect(feedback.get_by_role("button", name="Helpful", exact=True)).to_be_disabled()
    _shot(page, "12-feedback")

    # dashboard: every watched figure drawn against its warning and critical lines
    page.get_by_role("link", name="Dashboard").click()
    watched = ("success_rate", "p95_seconds", "p99_seconds", "quality", "ingest_success_rate", "ingest_p95_seconds")
    for metric in watched:
        tile = page.locator(f'.tile[data-metric="{metric}"]')
        expect(tile.locator("svg.gauge line[data-limit=warning]")).to_have_count(1)
        expect(tile.locator("svg.gauge line[data-limit=critical]")).to_have_count(1)
    ingest = page.locator('.tile[data-metric="ingest_success_rate"]')
    expect(ingest.locator(".value")).to_have_text("50.0 %")
    expect(ingest).to_have_attribute("data-level", "critical")
    expect(ingest).to_contain_text("1 indexed, 1 failed")
    expect(ingest).to_contain_text("95 % (critical)")
    expect(page.locator('.tile[data-metric="success_rate"]')).to_have_attribute("data-level", "ok")
    expect(page.locator('.tile[data-metric="p99_seconds"]')).to_have_attribute("data-level", "none")
    expect(page.locator('.tile[data-metric="p95_seconds"]')).to_contain_text("300 s (warning)")
    expect(page.locator('.tile[data-metric="cost_usd"] .value')).to_have_text("$0.0000")  # the local model is free
    expect(page.locator('.tile[data-metric="cost_usd"]')).to_contain_text("1 recent run")
    expect(page.locator('.tile[data-metric="quality"]')).to_contain_text("0.8 (critical)")
    _shot(page, "13-dashboard")
    assert problems == [], problems


def test_support_ticket_api_validates_and_hides_other_users_runs(make_container) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app(container=make_container())) as client:
        api = Api(client)
        api.ingest("refunds.md", REFUND, acl=["tenant:*"])
        body = {"customer_id": "acme 42!", "subject": "x", "body": "y"}
        r = client.post("/v1/support/tickets", headers=api.headers, json=body)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"
        assert client.post("/v1/support/tickets", json={**body, "customer_id": "acme"}).status_code == 401
        long = {"customer_id": "acme", "subject": "s" * 300, "body": "b" * 3800}
        r = client.post("/v1/support/tickets", headers=api.headers, json=long)
        assert r.status_code == 422 and "4000" in r.json()["error"]["message"]

        ann = api.new_key("ann", role="editor")
        r = client.post("/v1/support/tickets", headers=ann.headers,
                        json={"customer_id": "acme-1", "subject": CONFIDENT[0], "body": CONFIDENT[1]})
        assert r.status_code == 202, r.text
        started = r.json()
        assert started["customer_id"] == "acme-1" and started["run"]["workflow"] == "support_assistant"
        run_id = started["run"]["id"]
        for _ in range(400):
            t = client.get(f"/v1/support/tickets/{run_id}", headers=ann.headers).json()
            if t["run"]["status"] != "running":
                break
            time.sleep(0.05)
        assert t["run"]["status"] == "succeeded" and t["run"]["inputs"]["history"] == "(no previous contact)"
        outputs = {o["id"]: o for o in t["outputs"]}
        assert "30 days" in outputs["draft"]["text"] and outputs["draft"]["citations"][0]["title"] == "refunds.md"
        assert outputs["gate"]["passed"] is True and outputs["knowledge"]["retrieved"] == 1
        assert t["draft"]["sources"] == [{"n": 1, "doc_id": t["draft"]["sources"][0]["doc_id"],
                                          "chunk_id": t["run"]["result"]["citations"][0]["chunk_id"],
                                          "title": "refunds.md"}]
        assert "chunks" not in json.dumps(t)  # retrieved texts stay out, as in the runs timeline
        bob = api.new_key("bob", role="editor")
        assert client.get(f"/v1/support/tickets/{run_id}", headers=bob.headers).status_code == 404
        assert client.get(f"/v1/support/tickets/{run_id}", headers=api.headers).status_code == 200  # tenant admin


def test_support_ticket_gathers_that_customers_history_only(make_container) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app(container=make_container())) as client:
        api = Api(client)
        api.ingest("refunds.md", REFUND, acl=["tenant:*"])
        mine = api.ingest("t1.txt", "Ticket: the customer's blender arrived broken and was refunded in May.",
                          acl=["tenant:*"], source="tickets", tags=["customer:c42"])
        theirs = api.ingest("t2.txt", "Ticket: another customer's blender arrived broken and was replaced.",
                            acl=["tenant:*"], source="tickets", tags=["customer:c7"])
        r = client.post("/v1/support/tickets", headers=api.headers,
                        json={"customer_id": "c42", "subject": "Broken blender", "body": "My blender arrived broken."})
        assert r.status_code == 202, r.text
        run_id = r.json()["run"]["id"]
        for _ in range(400):
            t = client.get(f"/v1/support/tickets/{run_id}", headers=api.headers).json()
            if t["run"]["status"] not in ("running",):
                break
            time.sleep(0.05)
        outputs = {o["id"]: o for o in t["outputs"]}
        assert outputs["history"]["retrieved"] == 1  # c42's one ticket, not c7's
        assert outputs["history"]["status"] == "completed"
        assert outputs["analyze"]["status"] == "completed" and outputs["analyze"]["text"]
        # both tickets match the question; only the customer's own reached the history step
        found = {h["doc_id"] for h in api.search("blender arrived broken", top_k=5)}
        assert {mine["document_id"], theirs["document_id"]} <= found
