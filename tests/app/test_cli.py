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


def test_serve_freezes_startup_objects_before_serving(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`cairn serve` hands the loaded model, engine and app to gc.freeze() before serving, so a
    full garbage collection no longer walks them (it took ~380 ms with every thread stopped)."""
    import argparse
    import gc

    import uvicorn

    from app import cli
    from core.settings import get_settings

    seen: dict[str, int] = {}

    def fake_run(app, **kw) -> None:  # type: ignore[no-untyped-def]
        seen["frozen"] = gc.get_freeze_count()
        seen["tracked"] = len(gc.get_objects())

    monkeypatch.setenv("CAIRN_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setattr(uvicorn, "run", fake_run)
    get_settings.cache_clear()
    try:
        assert cli.cmd_serve(argparse.Namespace(host="127.0.0.1", port=0)) == 0
    finally:
        gc.unfreeze()
        get_settings.cache_clear()
    assert seen["frozen"] > 100_000, seen
    assert seen["tracked"] < seen["frozen"] // 10, seen  # what a full collection still walks
