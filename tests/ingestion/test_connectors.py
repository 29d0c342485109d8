"""Connectors on their own: ACL mapping, templates that cannot reach past a column, filesystem
globs / stamps / symlinks, SQL cursors (on a SQLite file), HTTP field paths and next links."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.connectors import SourceDocument, SourceFailure, SyncCheckpoint, map_acl
from core.errors import InvalidInput, Unavailable
from ingestion.connectors import AccessPolicy, build_connector, parse_config
from ingestion.connectors.http_json import HttpJsonConnector, pick

pytestmark = pytest.mark.unit


def _docs(items: Any) -> dict[str, SourceDocument]:
    return {i.external_id: i for i in items if isinstance(i, SourceDocument)}


def test_source_permissions_map_onto_acl_strings() -> None:
    assert map_acl("support, sales;user:bob") == ["group:sales", "group:support", "user:bob"]
    assert map_acl(["alice", "*"], prefix="user:") == ["tenant:*", "user:alice"]
    assert map_acl(None) == [] and map_acl("") == []


def test_templates_refuse_attribute_and_index_access() -> None:
    for template in ("{row.__class__}", "{row[0]}", "{a:{b}}"):
        with pytest.raises(InvalidInput, match="not allowed"):
            parse_config("sql", {"url": "sqlite:///x.db", "table": "t", "text_template": template})
    with pytest.raises(InvalidInput, match="exactly one of 'table' or 'query'"):
        parse_config("sql", {"url": "sqlite:///x.db", "text_template": "{a}"})
    with pytest.raises(InvalidInput, match="unknown connector kind"):
        parse_config("ftp", {})


def test_secrets_are_masked_in_the_public_config() -> None:
    sql = parse_config("sql", {"url": "postgresql://u:pw@db/x", "table": "t", "text_template": "{a}"}).public()
    assert sql["url"] == "postgresql://u:***@db/x"
    http = parse_config("http_json", {"url": "https://api.example.com/x", "token": "t0k",
                                      "headers": {"X-Api-Key": "k"}}).public()
    assert http["token"] == "***" and http["headers"] == {"X-Api-Key": "***"}


def test_filesystem_globs_stamps_and_symlinks(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    (root / "top.md").write_text("top")
    (root / "a" / "b" / "deep.txt").write_text("deep")
    (root / "a" / "skip.log").write_text("log")
    (root / "a" / "b" / "tmp.txt").write_text("tmp")
    (outside / "secret.txt").write_text("secret")
    os.symlink(outside / "secret.txt", root / "link.txt")
    policy = AccessPolicy(filesystem_roots=(root,))
    config = {"root": str(root), "include": ["*.md", "*.txt"], "exclude": ["a/b/tmp*"],
              "acl_by_glob": {"a/*": ["eng"]}}
    c = build_connector("filesystem", config, policy)
    first = _docs(c.poll(SyncCheckpoint()))
    assert set(first) == {"top.md", "a/b/deep.txt"}  # the link leads outside root: ignored
    assert first["a/b/deep.txt"].acl == ["group:eng"] and first["top.md"].acl == []
    assert c.list_ids() == {"top.md", "a/b/deep.txt"}
    checkpoint = c.next_checkpoint()
    assert _docs(c.poll(checkpoint)) == {}  # nothing changed, nothing read
    (root / "top.md").write_text("top, changed and longer")
    assert set(_docs(c.poll(checkpoint))) == {"top.md"}
    with pytest.raises(InvalidInput, match="outside the allowed directories"):
        build_connector("filesystem", {"root": str(outside)}, policy)


def test_sql_cursor_acl_column_and_failures(tmp_path: Path) -> None:
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE accounts (id INTEGER, name TEXT, notes TEXT, owners TEXT, region TEXT, "
                  "updated_at TEXT)")
        c.executemany("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?)", [
            (1, "Acme", "Renewal due in March.", "sales,user:ann", "EU", "2026-01-01"),
            (2, "Globex", "", None, "US", "2026-01-02"),
            (3, "Initech", "Asked for a discount.", "sales", "US", "2026-01-03"),
        ])
    config = {"url": f"sqlite:///{db}", "table": "accounts", "title_template": "{name}",
              "text_template": "{name}: {notes}", "metadata_columns": ["region"], "acl_column": "owners"}
    with pytest.raises(InvalidInput, match="outside the allowed directories"):
        build_connector("sql", config, AccessPolicy())
    with pytest.raises(InvalidInput, match="no database driver"):
        build_connector("sql", {**config, "url": "oracle+nosuchdriver://db/x"}, AccessPolicy(allowed_hosts=("*",)))
    c = build_connector("sql", config, AccessPolicy(filesystem_roots=(tmp_path,)))
    items = list(c.poll(SyncCheckpoint()))
    docs = _docs(items)
    assert docs["1"].acl == ["group:sales", "user:ann"] and docs["1"].metadata == {"region": "EU"}
    assert docs["1"].content == b"Acme: Renewal due in March." and docs["2"].content == b"Globex: "
    checkpoint = c.next_checkpoint()
    assert checkpoint.state == {"cursor": "2026-01-03", "cursor_type": "value"}
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE accounts SET notes = 'Signed.', updated_at = '2026-02-01' WHERE id = 1")
        conn.execute("DELETE FROM accounts WHERE id = 2")
        conn.execute("INSERT INTO accounts VALUES (4, 'Hooli', NULL, 'sales', 'US', '2026-01-01')")
    # the row at the cursor, then the change; row 4 is older than the cursor (a full sync reads it)
    assert [i.external_id for i in c.poll(checkpoint)] == ["3", "1"]
    assert c.list_ids() == {"1", "3", "4"}
    c.close()
    broken = build_connector("sql", {**config, "table": "nope"}, AccessPolicy(filesystem_roots=(tmp_path,)))
    with pytest.raises(Unavailable, match="could not be read"):
        list(broken.poll(SyncCheckpoint()))
    broken.close()
    empty = build_connector("sql", {**config, "text_template": "{notes}"}, AccessPolicy(filesystem_roots=(tmp_path,)))
    failures = [i for i in empty.poll(SyncCheckpoint()) if isinstance(i, SourceFailure)]
    assert [f.external_id for f in failures] == ["4"]
    assert failures[0].reason == "text_template rendered an empty text for this row"
    empty.close()


def test_http_field_paths_and_next_links_stay_on_the_host() -> None:
    assert pick({"a": {"b": [{"c": 1}]}}, "a.b.0.c") == 1
    assert pick({"a": 1}, "a.b") is None and pick([1], "") == [1]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/items":
            return httpx.Response(200, json={"items": [{"id": 1, "body": "one"}], "next": "https://evil.example/x"})
        return httpx.Response(404)

    config = parse_config("http_json", {"url": "https://api.example.com/items", "items_path": "items"})
    policy = AccessPolicy(allowed_hosts=("api.example.com",))
    config.check_access(policy)
    with pytest.raises(InvalidInput, match="CAIRN_CONNECTORS__ALLOWED_HOSTS"):
        config.check_access(AccessPolicy(allowed_hosts=("other.example.com",)))
    c = config.build(policy)
    assert isinstance(c, HttpJsonConnector)
    c._client = httpx.Client(transport=httpx.MockTransport(handler))  # the seam for a fake transport
    items = list(c.poll(SyncCheckpoint()))
    assert _docs(items)["1"].content == b"one"
    assert "leaves api.example.com" in items[-1].reason  # type: ignore[union-attr]
    with pytest.raises(Unavailable, match="listing is incomplete"):
        c.list_ids()
    c.close()
