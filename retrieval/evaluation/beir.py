"""Loader for datasets in the BEIR layout, the format our evaluation numbers are quoted in.

    <root>/corpus.jsonl     {"_id", "title", "text"}
    <root>/queries.jsonl    {"_id", "text"}
    <root>/qrels/<split>.tsv  query-id <tab> corpus-id <tab> score   (first line is a header)

Reading is strict on purpose: a missing file or a malformed line stops the load with the path and
line number, because a silently half-loaded qrels file produces a plausible but wrong score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InvalidInput, NotFound


@dataclass(frozen=True)
class BeirDocument:
    doc_id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """Title and body joined the way BEIR baselines embed them."""
        return f"{self.title} {self.text}".strip()


@dataclass(frozen=True)
class BeirDataset:
    corpus: dict[str, BeirDocument]
    queries: dict[str, str]  # only the queries judged in `qrels`
    qrels: dict[str, dict[str, int]]
    split: str


def _require(path: Path, root: Path) -> Path:
    if not path.is_file():
        raise NotFound(
            f"BEIR dataset file {path} is missing; expected corpus.jsonl, queries.jsonl and "
            f"qrels/<split>.tsv under {root}",
            path=str(path),
        )
    return path


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{path}:{n} is not valid JSON ({exc.msg})", path=str(path)) from exc
            if not isinstance(row, dict) or "_id" not in row:
                raise InvalidInput(f"{path}:{n} has no '_id' field", path=str(path))
            rows.append(row)
    return rows


def load_corpus(root: Path) -> dict[str, BeirDocument]:
    path = _require(root / "corpus.jsonl", root)
    return {
        str(r["_id"]): BeirDocument(str(r["_id"]), str(r.get("title") or ""), str(r.get("text") or ""))
        for r in _jsonl(path)
    }


def load_queries(root: Path) -> dict[str, str]:
    path = _require(root / "queries.jsonl", root)
    return {str(r["_id"]): str(r.get("text") or "") for r in _jsonl(path)}


def load_qrels(root: Path, split: str = "test") -> dict[str, dict[str, int]]:
    path = _require(root / "qrels" / f"{split}.tsv", root)
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            parts = line.rstrip("\n").split("\t")
            if n == 1 and parts[0] == "query-id":
                continue
            if not line.strip():
                continue
            if len(parts) != 3:
                raise InvalidInput(f"{path}:{n} needs 3 tab-separated fields, got {len(parts)}")
            try:
                score = int(parts[2])
            except ValueError as exc:
                raise InvalidInput(f"{path}:{n} score {parts[2]!r} is not an integer") from exc
            qrels.setdefault(parts[0], {})[parts[1]] = score
    return qrels


def load_beir(root: str | Path, split: str = "test") -> BeirDataset:
    """Corpus, the split's judged queries, and its qrels. Raises NotFound naming a missing file."""
    root = Path(root)
    qrels = load_qrels(root, split)
    all_queries = load_queries(root)
    missing = sorted(set(qrels) - set(all_queries))
    if missing:
        raise InvalidInput(
            f"{len(missing)} queries in qrels/{split}.tsv are not in queries.jsonl (first: {missing[0]})"
        )
    queries = {qid: all_queries[qid] for qid in qrels}
    return BeirDataset(corpus=load_corpus(root), queries=queries, qrels=qrels, split=split)
