"""`cairn ingest` and `cairn search` against a live server, as an operator would use them."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main

pytestmark = pytest.mark.integration


def test_ingest_a_folder_then_search(live_server, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    url = live_server()
    folder = tmp_path / "handbook"
    (folder / "it").mkdir(parents=True)
    (folder / "refunds.md").write_text("# Refunds\n\nCustomers may request a full refund within 30 days.\n")
    (folder / "it" / "vpn.txt").write_text("Connect to the VPN with WireGuard before opening the wiki.\n")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)

    code = main(["ingest", str(folder), "--url", url, "--key", "test-admin-key", "--acl", "tenant:*"])
    out = capsys.readouterr()
    assert code == 1  # the PNG was refused, and the exit code says so
    assert "2 indexed, 1 failed" in out.out
    assert "logo.png" in out.out + out.err

    assert main(["search", "how many days for a refund", "--url", url, "--key", "test-admin-key"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1. ") and "refunds.md" in out.splitlines()[0]


def test_search_with_a_bad_key_fails_clearly(live_server, capsys) -> None:  # type: ignore[no-untyped-def]
    url = live_server()
    assert main(["search", "anything", "--url", url, "--key", "wrong"]) == 1
    assert "invalid or revoked API key" in capsys.readouterr().err
