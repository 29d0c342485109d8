"""Tuning proposals end to end: a tune job grid-searches on the training queries, activation is
refused unless the proposal wins on the held-back queries, and the active settings change what
the tenant's searches return, survive a restart and can be reset.

The corpus is built so the two settings differ beyond doubt: each question's answer shares no
word with it (a paraphrase), while twelve keyword-soup documents contain every question's words.
Pure BM25 (the server's configured settings here) therefore ranks the answer below all twelve
(nDCG@10 = 0), and dense-only ranking finds it.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.services.tuning import SearchSpace, TunedSettings, expand_grid, split_queries
from core.errors import Unavailable
from core.models import Role
from core.settings import SearchSettings
from tests.app.api import Api

pytestmark = pytest.mark.integration

QUESTIONS = {
    "pw": ("How can I reset a forgotten password?",
           "Lost your login secret? Open the sign-in page, choose the recovery link, and a one-time code "
           "arrives by email so you can pick new credentials."),
    "car": ("Where is the office parking garage?",
            "Cars belong in the underground structure beneath building B; the entrance ramp sits beside the "
            "loading dock on Elm Street."),
    "pay": ("When are salaries paid each month?",
            "Employees receive their wages on the twenty-fifth; if that date falls on a weekend, the transfer "
            "happens the Friday before."),
    "leave": ("How do I request vacation days?",
              "Annual leave is booked through the HR portal, and your manager confirms the planned absence."),
    "pc": ("What is the laptop replacement policy?",
           "Notebook computers are swapped for newer models every three years; the IT desk ships the new "
           "machine and collects the old one."),
    "trip": ("Who approves travel expenses?",
             "Costs of business trips, such as flights and hotels, are signed off by your department head "
             "before reimbursement."),
}
KEYWORDS = ("reset forgotten password office parking garage salaries paid month request vacation days "
            "laptop replacement policy approves travel expenses").split()
FILLER = ("minutes of the quarterly committee", "a crossword puzzle draft", "an unrelated shopping list",
          "a poem about the sea", "notes from a chess club", "a gardening diary page", "a recipe for soup",
          "an old train timetable", "lyrics of a folk song", "a weather log", "a museum leaflet",
          "a list of bird sightings")
PURE_SPARSE = SearchSettings(fusion="rrf", dense_weight=0.0, sparse_weight=1.0, rerank=False)
SPACE = {"dense_weight": [1.0], "sparse_weight": [1.0, 0.0]}


def soup(i: int) -> str:
    words = list(KEYWORDS)
    random.Random(i).shuffle(words)
    return f"This is {FILLER[i]}, number {i}. " + " ".join(words) + f". End of {FILLER[i]}."


def seed_corpus(api: Api) -> str:
    docs = {key: answer for key, (_, answer) in QUESTIONS.items()} | {f"soup{i}": soup(i) for i in range(len(FILLER))}
    jobs = []
    for doc_id, text in docs.items():
        r = api.upload(f"{doc_id}.txt", text.encode(), {"title": doc_id, "doc_id": doc_id, "acl": ["tenant:*"]})
        assert r.status_code == 202, r.text
        jobs.append(r.json()["job_id"])
    assert all(api.wait(j)["state"] == "indexed" for j in jobs)
    body = {"name": "helpdesk", "queries": {k: q for k, (q, _) in QUESTIONS.items()},
            "qrels": {k: {k: 1} for k in QUESTIONS}, "acl": ["tenant:*"]}
    r = api.client.post("/v1/eval-datasets/attached", headers=api.headers, json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def tune(api: Api, dataset_id: str, space: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {"kind": "tune", "dataset_id": dataset_id, "search_space": space, "holdout": 0.34, **extra}
    r = api.client.post("/v1/evals", headers=api.headers, json=body)
    assert r.status_code == 202, r.text
    assert r.json()["kind"] == "tune" and r.json()["status"] in ("queued", "running", "succeeded", "failed")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        p = api.client.get(f"/v1/tuning/proposals/{r.json()['id']}", headers=api.headers).json()
        if p["status"] in ("succeeded", "failed"):
            assert api.job(p["id"])["kind"] == "tune"
            return p  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"tuning job did not finish: {p}")


def top_doc(api: Api, question: str) -> str:
    return str(api.search(question, top_k=3)[0]["doc_id"])


def test_proposal_activates_only_when_better_on_holdout_persists_and_resets(
    make_container, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    data_dir = tmp_path / "var"
    container = make_container(data_dir, search=PURE_SPARSE)
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        editor = api.new_key("erin", role="editor")
        reader = api.new_key("rita")
        dataset_id = seed_corpus(api)
        assert top_doc(api, QUESTIONS["pw"][0]).startswith("soup")  # BM25 only: a keyword soup wins

        p = tune(editor, dataset_id, SPACE)
        assert p["status"] == "succeeded", p
        assert (p["train_queries"], p["holdout_queries"]) == (4, 2)
        assert len(p["trials"]) == 2 and p["metric"] == "ndcg@10"
        assert p["current"] == {"fusion": "rrf", "dense_weight": 0.0, "sparse_weight": 1.0, "rerank": False,
                                "rerank_depth": 30}
        assert p["proposed"]["dense_weight"] == 1.0 and p["proposed"]["sparse_weight"] == 0.0
        assert p["current_train_score"] == 0.0 and p["current_holdout_score"] == 0.0
        assert p["train_score"] == max(t["train_score"] for t in p["trials"]) > 0
        assert p["holdout_score"] > 0 and p["beats_current"] is True

        # settings equal to the current ones cannot beat them: 409 with both numbers
        same = tune(editor, dataset_id, {"dense_weight": [0.0]})
        assert same["proposed"] == same["current"] and same["beats_current"] is False
        r = api.client.post(f"/v1/tuning/proposals/{same['id']}/activate", headers=api.headers)
        assert r.status_code == 409, r.text
        err = r.json()["error"]
        assert err["code"] == "proposal_not_better"
        assert err["details"] == {"holdout_score": 0.0, "current_holdout_score": 0.0}

        # a tune job that failed is retried from the jobs API under the same id
        def unavailable(*_: Any) -> Any:
            raise Unavailable("the search backend is restarting")

        container.tuning._ranker = unavailable
        failed = tune(editor, dataset_id, SPACE)
        assert failed["status"] == "failed" and api.job(failed["id"])["state"] == "failed"
        del container.tuning._ranker
        r = editor.client.post(f"/v1/jobs/{failed['id']}/retry", headers=editor.headers)
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 60
        while (retried := api.client.get(f"/v1/tuning/proposals/{failed['id']}", headers=api.headers).json())[
            "status"
        ] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert retried["status"] == "succeeded" and retried["proposed"] == p["proposed"], retried

        # only an admin activates; a reader cannot even start a tune job
        r = editor.client.post(f"/v1/tuning/proposals/{p['id']}/activate", headers=editor.headers)
        assert r.status_code == 403
        r = reader.client.post("/v1/evals", headers=reader.headers,
                               json={"kind": "tune", "dataset_id": dataset_id, "search_space": SPACE})
        assert r.status_code == 403

        r = api.client.post(f"/v1/tuning/proposals/{p['id']}/activate", headers=api.headers)
        assert r.status_code == 200, r.text
        active = r.json()
        assert active["tuned"] is True and active["proposal_id"] == p["id"]
        assert active["settings"] == p["proposed"] and active["defaults"] == p["current"]
        assert top_doc(api, QUESTIONS["pw"][0]) == "pw"  # the tenant's searches use it at once
        assert "car" in [h["doc_id"] for h in reader.search(QUESTIONS["car"][0], top_k=3)]

        # another tenant keeps the server defaults
        _, key = container.keys.create("other-tenant", "admin", [], Role.admin)
        outsider = api.as_key(key)
        other = outsider.client.get("/v1/tuning/active", headers=outsider.headers).json()
        assert other["tuned"] is False and other["settings"]["dense_weight"] == 0.0

        # the proposal made before activation is now measured against the new settings: not better
        r = api.client.post(f"/v1/tuning/proposals/{p['id']}/activate", headers=api.headers)
        assert r.status_code == 409 and r.json()["error"]["code"] == "proposal_not_better"
        assert r.json()["error"]["details"]["current_holdout_score"] == pytest.approx(p["holdout_score"])
    container.close()

    restarted = make_container(data_dir, search=PURE_SPARSE)
    with TestClient(create_app(container=restarted)) as client:
        api = Api(client)
        active = api.client.get("/v1/tuning/active", headers=api.headers).json()
        assert active["tuned"] is True and active["settings"]["sparse_weight"] == 0.0
        assert top_doc(api, QUESTIONS["pw"][0]) == "pw"

        r = api.client.post("/v1/tuning/active/reset", headers=api.headers)
        assert r.status_code == 200 and r.json()["tuned"] is False
        assert r.json()["settings"] == r.json()["defaults"]
        assert top_doc(api, QUESTIONS["pw"][0]).startswith("soup")
        listed = api.client.get("/v1/tuning/proposals", headers=api.headers).json()
        assert listed["count"] == 3


def test_tune_requests_are_validated(make_container) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app(container=make_container())) as client:
        api = Api(client)
        api.ingest("a.txt", "Customers may request a full refund within 30 days.", doc_id="a", acl=["tenant:*"])
        one = {"name": "one", "queries": {"q": "refund"}, "qrels": {"q": {"a": 1}}}
        ds = api.client.post("/v1/eval-datasets/attached", headers=api.headers, json=one).json()["id"]
        cases = [
            ({"kind": "tune", "dataset_id": ds, "search_space": {}}, 422),  # one query: nothing to hold back
            ({"kind": "tune", "dataset_id": ds, "search_space": {"fusion": ["max"]}}, 422),
            ({"kind": "tune", "dataset_id": ds, "search_space": {"dense_weight": [-1]}}, 422),
            ({"kind": "tune", "dataset_id": ds, "search_space": {}, "holdout": 1.0}, 422),
            ({"kind": "sweep", "dataset_id": ds}, 422),
            ({"kind": "tune", "dataset_id": "nope", "search_space": {}}, 404),
        ]
        for body, status in cases:
            r = api.client.post("/v1/evals", headers=api.headers, json=body)
            assert r.status_code == status, (body, r.text)
            assert r.json()["error"]["code"] in ("invalid_input", "not_found")
        eight = [0, 1, 2, 3, 4, 5, 6, 7]
        too_big = {"fusion": ["rrf"], "dense_weight": eight, "sparse_weight": eight, "rerank": [True, False]}
        two = {"name": "two", "queries": {"q": "refund", "r": "30 days"}, "qrels": {"q": {"a": 1}, "r": {"a": 1}}}
        ds2 = api.client.post("/v1/eval-datasets/attached", headers=api.headers, json=two).json()["id"]
        r = api.client.post("/v1/evals", headers=api.headers,
                            json={"kind": "tune", "dataset_id": ds2, "search_space": too_big})
        assert r.status_code == 422 and "128 points; the limit is 64" in r.json()["error"]["message"]
        r = api.client.post("/v1/tuning/proposals/nope/activate", headers=api.headers)
        assert r.status_code == 404


def test_grid_is_normalised_and_the_split_is_seeded() -> None:
    current = TunedSettings(fusion="rrf", dense_weight=1.0, sparse_weight=1.0, rerank=True, rerank_depth=30)
    grid = expand_grid(SearchSpace(fusion=["rrf", "dbsf"], dense_weight=[1.0, 2.0], rerank=[True, False],
                                   rerank_depth=[10, 30]), current)
    # dbsf takes no weights and depth means nothing without rerank: 2*2*(2+1) rrf + (2+1) dbsf
    assert len(grid) == 9
    assert all(g.dense_weight == 1.0 for g in grid if g.fusion == "dbsf")
    assert all(g.rerank_depth == 30 for g in grid if not g.rerank)
    assert expand_grid(SearchSpace(), current) == [current]
    ids = [f"q{i}" for i in range(10)]
    train, held = split_queries(ids, 0.3, seed=7)
    assert len(held) == 3 and sorted(train + held) == sorted(ids)
    assert split_queries(list(reversed(ids)), 0.3, seed=7) == (train, held)
    assert split_queries(ids, 0.3, seed=8) != (train, held)
    assert split_queries(["a", "b"], 0.9, seed=0)[0] != []  # at least one query on each side
