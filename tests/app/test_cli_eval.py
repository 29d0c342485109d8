"""`cairn eval beir` as a user runs it: a separate process, next to a running server that holds
its data directory's engine lock, writing a JSON and a self-contained HTML report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from retrieval.evaluation import evaluate_run
from tests.app import beir_fixture
from tests.app.api import ADMIN

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_cli_eval_beir_writes_reports_without_touching_the_server(tmp_path, make_container, live_server) -> None:  # type: ignore[no-untyped-def]
    server_dir = tmp_path / "server"
    base = live_server(make_container(data_dir=server_dir))
    before = sorted(p.name for p in server_dir.iterdir())
    data = beir_fixture.write(tmp_path / "tiny")
    out = tmp_path / "report"
    env = {**os.environ, "CAIRN_DATA_DIR": str(server_dir), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "eval", "beir", str(data), "--configs", "sparse,dense,hybrid",
         "--ks", "1,10", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ingest" in proc.stderr and "evaluate" in proc.stderr  # the progress bars
    assert "hybrid" in proc.stdout and "report.html" in proc.stdout

    report = json.loads((out / "report.json").read_text())
    assert set(report["summary"]) == {"sparse", "dense", "hybrid"}
    assert report["dataset"]["documents"] == 20 and report["dataset"]["queries"] == 6
    hybrid = report["per_query"]["hybrid"]
    assert hybrid["q1"]["ranked"][0] == "d01" and hybrid["q1"]["metrics"]["ndcg@10"] == 1.0
    for config, summary in report["summary"].items():
        ranked = {qid: row["ranked"] for qid, row in report["per_query"][config].items()}
        expected = evaluate_run(ranked, beir_fixture.QRELS, ks=(1, 10),
                                metrics=("ndcg", "mrr", "recall", "precision", "hit_rate"))
        for key, value in expected.items():
            assert summary[key] == pytest.approx(value), (config, key)

    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 3  # summary bars + one per-query delta chart per extra config
    assert "<script" not in html.lower() and "src=" not in html and "href=" not in html
    assert "hybrid vs sparse" in html

    # the server and its data directory never saw the evaluation
    assert sorted(p.name for p in server_dir.iterdir()) == before
    docs = httpx.get(f"{base}/v1/documents", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert docs["count"] == 0
