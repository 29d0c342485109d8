"""Shared fixtures: a real embedding model (loaded once), real engine, real SQL."""

from __future__ import annotations

import os

for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "SCARF_NO_ANALYTICS": "true",
    "DO_NOT_TRACK": "true",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_k, _v)

from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    from retrieval.embedder import SentenceTransformerEmbedder

    e = SentenceTransformerEmbedder(precision="bf16")
    e.warm_up()
    return e


@pytest.fixture
def make_container(tmp_path: Path, embedder) -> Iterator[Callable[..., object]]:  # type: ignore[no-untyped-def]
    """Builds started Containers on a temp data dir; closes them at the end."""
    from app.container import Container
    from core.settings import Settings

    made: list[Container] = []

    def factory(data_dir: Path | None = None, **overrides: object) -> Container:
        settings = Settings(data_dir=data_dir or tmp_path / "var", admin_key="test-admin-key", **overrides)
        c = Container(settings, embedder=embedder)
        c.start()
        made.append(c)
        return c

    yield factory
    for c in made:
        try:
            c.close()
        except Exception:  # already closed by the test
            pass
