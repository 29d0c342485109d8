"""Key administration through HTTP: list, revoke, rotate (with a grace period), change, the
last-admin guard, tenant isolation, and the principals view."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core.models import Role
from tests.app.api import Api

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(make_container) -> Iterator[tuple[Api, Any]]:  # type: ignore[no-untyped-def]
    container = make_container()
    with TestClient(create_app(container=container)) as client:
        yield Api(client), container


def _create(api: Api, user: str, groups: list[str] | None = None, role: str = "reader") -> dict[str, Any]:
    r = api.client.post("/v1/keys", headers=api.headers, json={"user": user, "groups": groups or [], "role": role})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _status(api: Api, key: str, path: str = "/v1/documents") -> int:
    return api.client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code


def _keys(api: Api) -> dict[str, dict[str, Any]]:
    r = api.client.get("/v1/keys", headers=api.headers)
    assert r.status_code == 200, r.text
    return {k["key_id"]: k for k in r.json()["data"]}


def test_list_shows_every_key_of_the_tenant_without_secrets(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    alice = _create(api, "alice", ["support", "sales"], "editor")
    assert _status(api, alice["key"]) == 200
    r = api.client.get("/v1/keys", headers=api.headers)
    assert r.json()["count"] == 2
    assert alice["key"] not in r.text and "key_hash" not in r.text
    listed = _keys(api)[alice["key_id"]]
    assert listed["user"] == "alice" and listed["groups"] == ["sales", "support"] and listed["role"] == "editor"
    assert listed["revoked_at"] is None and listed["expires_at"] is None and listed["created_at"]
    assert listed["last_used_at"] is not None  # alice called the API above
    assert set(listed) >= {"key_id", "user", "groups", "role", "created_at", "expires_at", "revoked_at"}


def test_revoked_key_is_refused_at_once(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    bob = _create(api, "bob")
    assert _status(api, bob["key"]) == 200
    r = api.client.delete(f"/v1/keys/{bob['key_id']}", headers=api.headers)
    assert r.status_code == 204
    r = api.client.get("/v1/documents", headers={"Authorization": f"Bearer {bob['key']}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    assert _keys(api)[bob["key_id"]]["revoked_at"] is not None
    assert api.client.delete(f"/v1/keys/{bob['key_id']}", headers=api.headers).status_code == 204  # idempotent
    r = api.client.post(f"/v1/keys/{bob['key_id']}/rotate", headers=api.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "key_revoked"


def test_rotation_replaces_the_secret_and_keeps_the_identity(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    carol = _create(api, "carol", ["support"])
    r = api.client.post(f"/v1/keys/{carol['key_id']}/rotate", headers=api.headers)
    assert r.status_code == 200, r.text
    new = r.json()["key"]
    assert new != carol["key"] and r.json()["key_id"] == carol["key_id"] and r.json()["grace_until"] is None
    assert _status(api, carol["key"]) == 401
    me = api.client.get("/v1/me", headers={"Authorization": f"Bearer {new}"})
    assert me.status_code == 200 and me.json()["user"] == "carol"
    assert _status(api, new) == 200
    assert _keys(api)[carol["key_id"]]["groups"] == ["support"]


def test_rotation_grace_period_lets_both_secrets_work_until_it_ends(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    dave = _create(api, "dave")
    r = api.client.post(f"/v1/keys/{dave['key_id']}/rotate", headers=api.headers, json={"grace_s": 2})
    assert r.status_code == 200, r.text
    new, grace_until = r.json()["key"], datetime.fromisoformat(r.json()["grace_until"])
    assert timedelta(seconds=1) < grace_until - datetime.now(UTC) <= timedelta(seconds=2)
    assert _status(api, dave["key"]) == 200 and _status(api, new) == 200
    time.sleep(max(0.0, (grace_until - datetime.now(UTC)).total_seconds()) + 0.2)
    assert _status(api, dave["key"]) == 401
    assert _status(api, new) == 200
    bad = api.client.post(f"/v1/keys/{dave['key_id']}/rotate", headers=api.headers, json={"grace_s": -1})
    assert bad.status_code == 422


def test_rotating_now_also_ends_earlier_rotated_out_secrets(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    gus = _create(api, "gus")
    url = f"/v1/keys/{gus['key_id']}/rotate"
    s2 = api.client.post(url, headers=api.headers, json={"grace_s": 3600}).json()["key"]
    s3 = api.client.post(url, headers=api.headers, json={"grace_s": 3600}).json()["key"]
    assert _status(api, gus["key"]) == _status(api, s2) == _status(api, s3) == 200
    # a short grace caps the older secrets' grace at its own end
    r = api.client.post(url, headers=api.headers, json={"grace_s": 60})
    s4, until = r.json()["key"], datetime.fromisoformat(r.json()["grace_until"])
    assert until - datetime.now(UTC) <= timedelta(seconds=60)
    assert _keys(api)[gus["key_id"]]["grace_until"] == r.json()["grace_until"]
    assert _status(api, gus["key"]) == _status(api, s3) == 200
    # "rotate now" (after a leak): every earlier secret is refused at once, not only the last one
    s5 = api.client.post(url, headers=api.headers, json={"grace_s": 0}).json()["key"]
    for old in (gus["key"], s2, s3, s4):
        assert _status(api, old) == 401
    assert _status(api, s5) == 200 and _keys(api)[gus["key_id"]]["grace_until"] is None


def test_revoking_during_a_grace_period_stops_both_secrets(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    erin = _create(api, "erin")
    new = api.client.post(f"/v1/keys/{erin['key_id']}/rotate", headers=api.headers, json={"grace_s": 600}).json()
    assert _status(api, erin["key"]) == 200
    assert api.client.delete(f"/v1/keys/{erin['key_id']}", headers=api.headers).status_code == 204
    assert _status(api, erin["key"]) == 401 and _status(api, new["key"]) == 401


def test_patch_changes_role_groups_and_expiry(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    api.ingest("support.txt", "The support escalation phone number is 555-0100.", acl=["group:support"])
    fay = _create(api, "fay")
    fay_api = api.as_key(fay["key"])
    assert fay_api.search("support escalation phone number") == []
    assert fay_api.upload("x.txt", b"some text", {"title": "x"}).status_code == 403

    url = f"/v1/keys/{fay['key_id']}"
    r = api.client.patch(url, headers=api.headers, json={"groups": ["support"], "role": "editor"})
    assert r.status_code == 200, r.text
    assert r.json()["groups"] == ["support"] and r.json()["role"] == "editor"
    assert fay_api.search("support escalation phone number")[0]["title"] == "support.txt"
    assert fay_api.upload("x.txt", b"some text", {"title": "x"}).status_code == 202

    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert api.client.patch(url, headers=api.headers, json={"expires_at": soon}).json()["expires_at"] is not None
    assert api.client.patch(url, headers=api.headers, json={"expires_at": None}).json()["expires_at"] is None
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    r = api.client.patch(url, headers=api.headers, json={"expires_at": past})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"
    assert api.client.patch(url, headers=api.headers, json={}).status_code == 422
    assert api.client.patch(url, headers=api.headers, json={"groups": ["bad group!"]}).status_code == 422
    assert api.client.patch(url, headers=api.headers, json={"role": "owner"}).status_code == 422


def test_the_last_admin_key_cannot_be_revoked_or_demoted(setup) -> None:  # type: ignore[no-untyped-def]
    api, container = setup
    boot = container.keys.authenticate("test-admin-key").key_id
    r = api.client.delete(f"/v1/keys/{boot}", headers=api.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "last_admin_key"
    r = api.client.patch(f"/v1/keys/{boot}", headers=api.headers, json={"role": "reader"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "last_admin_key"

    # an expiry would lock the tenant out as surely, only later
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    r = api.client.patch(f"/v1/keys/{boot}", headers=api.headers, json={"expires_at": soon})
    assert r.status_code == 409 and r.json()["error"]["code"] == "last_admin_key"
    assert _keys(api)[boot]["expires_at"] is None

    second = _create(api, "root2", role="admin")
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    r = api.client.patch(f"/v1/keys/{boot}", headers=api.headers, json={"expires_at": later})
    assert r.status_code == 200 and r.json()["expires_at"] is not None  # another admin key remains
    assert api.client.patch(f"/v1/keys/{boot}", headers=api.headers, json={"expires_at": None}).status_code == 200
    assert api.client.delete(f"/v1/keys/{boot}", headers=api.headers).status_code == 204
    assert _status(api, "test-admin-key", "/v1/keys") == 401
    root2 = api.as_key(second["key"])
    r = root2.client.delete(f"/v1/keys/{second['key_id']}", headers=root2.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "last_admin_key"
    assert _status(api, second["key"], "/v1/keys") == 200


def test_admins_never_see_or_touch_another_tenants_keys(setup) -> None:  # type: ignore[no-untyped-def]
    api, container = setup
    other_id, other_key = container.keys.create("tenant-b", "bob", ["ops"], Role.admin)
    other_reader_id, _ = container.keys.create("tenant-b", "bea", [], Role.reader)
    assert other_id not in _keys(api)
    for method, path, body in [
        ("GET", f"/v1/keys/{other_reader_id}", None),
        ("PATCH", f"/v1/keys/{other_reader_id}", {"role": "admin"}),
        ("POST", f"/v1/keys/{other_reader_id}/rotate", None),
        ("DELETE", f"/v1/keys/{other_reader_id}", None),
    ]:
        r = api.client.request(method, path, headers=api.headers, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "not_found"
    b = api.as_key(other_key)
    seen = b.client.get("/v1/keys", headers=b.headers).json()
    assert {k["user"] for k in seen["data"]} == {"bob", "bea"}  # and not the default tenant's admin
    assert _status(api, other_key) == 200  # nothing above changed tenant B's keys
    principals = b.client.get("/v1/admin/principals", headers=b.headers).json()
    assert [u["user"] for u in principals["users"]] == ["bea", "bob"]


def test_key_administration_needs_the_admin_role(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    editor = _create(api, "ed", role="editor")
    target = _create(api, "victim")
    h = {"Authorization": f"Bearer {editor['key']}"}
    assert api.client.get("/v1/keys", headers=h).status_code == 403
    assert api.client.get("/v1/admin/principals", headers=h).status_code == 403
    assert api.client.delete(f"/v1/keys/{target['key_id']}", headers=h).status_code == 403
    assert api.client.post(f"/v1/keys/{target['key_id']}/rotate", headers=h).status_code == 403
    assert api.client.patch(f"/v1/keys/{target['key_id']}", headers=h, json={"role": "admin"}).status_code == 403
    assert _status(api, target["key"]) == 200


def test_principals_lists_users_and_groups_from_usable_keys(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    _create(api, "alice", ["support"])
    _create(api, "alice", ["sales"], "editor")
    gone = _create(api, "gus", ["support", "legal"])
    api.client.delete(f"/v1/keys/{gone['key_id']}", headers=api.headers)
    r = api.client.get("/v1/admin/principals", headers=api.headers)
    assert r.status_code == 200, r.text
    users = {u["user"]: u for u in r.json()["users"]}
    assert users["alice"]["groups"] == ["sales", "support"] and users["alice"]["roles"] == ["editor", "reader"]
    assert users["alice"]["active_keys"] == 2
    assert users["gus"]["active_keys"] == 0 and users["gus"]["keys"] == 1
    groups = {g["group"]: g["users"] for g in r.json()["groups"]}
    assert groups == {"sales": ["alice"], "support": ["alice"]}  # a revoked key makes nobody a member


def test_the_operator_creates_tenants_whose_admins_are_confined_to_them(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    r = api.client.post("/v1/admin/tenants", headers=api.headers, json={"tenant_id": "acme", "admin_user": "ada"})
    assert r.status_code == 201, r.text
    created = r.json()
    acme = api.as_key(created["key"])
    assert created["tenant_id"] == "acme" and created["key"].startswith("cairn_")

    # the new admin manages acme's own keys and documents, and sees nothing of the default tenant
    api.ingest("ops.txt", "The operator's runbook says to rotate keys every quarter.", acl=["tenant:*"])
    acme.ingest("acme.txt", "Acme ships anvils from the desert warehouse.", acl=["tenant:*"])
    assert [h["text"] for h in acme.search("rotate keys every quarter runbook")] in (
        [], ["Acme ships anvils from the desert warehouse."]
    )
    assert "anvils" in acme.search("anvils desert warehouse")[0]["text"]
    assert all("anvils" not in h["text"] for h in api.search("anvils desert warehouse"))
    assert [d["title"] for d in acme.client.get("/v1/documents", headers=acme.headers).json()["data"]] == ["acme.txt"]
    bob = _create(acme, "bob")
    assert bob["key"] and set(_keys(acme)) == {created["key_id"], bob["key_id"]}

    listed = api.client.get("/v1/admin/tenants", headers=api.headers).json()
    by_id = {t["tenant_id"]: t for t in listed["data"]}
    assert by_id["acme"] == {"tenant_id": "acme", "keys": 2, "admin_keys": 1}

    # only an admin of the operator's tenant manages tenants; names are validated; no duplicates
    assert acme.client.post("/v1/admin/tenants", headers=acme.headers, json={"tenant_id": "x"}).status_code == 403
    assert acme.client.get("/v1/admin/tenants", headers=acme.headers).status_code == 403
    reader = api.as_key(_create(api, "rita")["key"])
    assert reader.client.get("/v1/admin/tenants", headers=reader.headers).status_code == 403
    r = api.client.post("/v1/admin/tenants", headers=api.headers, json={"tenant_id": "acme"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    for bad in ({"tenant_id": "Bad Name"}, {"tenant_id": ""}, {"tenant_id": "ok", "admin_user": "a b"}, {}):
        r = api.client.post("/v1/admin/tenants", headers=api.headers, json=bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input", bad
