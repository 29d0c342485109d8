"""The collection layout a distributed Qdrant deployment asks for (deploy/docker-compose.yml sets
CAIRN_QDRANT_REPLICATION_FACTOR=2): the settings reach create_collection and are accepted."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient

from app.container import build_index
from core.settings import Settings
from retrieval.index.qdrant_remote import QdrantIndex

pytestmark = [
    pytest.mark.unit,
    # the in-process client ignores payload indexes and says so; a server honours them
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
]


def test_layout_settings_reach_create_collection_and_are_accepted() -> None:
    # the in-process client accepts the distributed-mode parameters but keeps no cluster layout,
    # so what reached it is recorded on the way through (the real call still runs)
    client = QdrantClient(":memory:")
    seen: dict[str, object] = {}
    create = client.create_collection

    def recording(*args: object, **kwargs: object) -> bool:
        seen.update(kwargs)
        return create(*args, **kwargs)  # type: ignore[arg-type]

    client.create_collection = recording  # type: ignore[method-assign]
    index = QdrantIndex(client, "chunks", dense_dim=8, shard_number=3, replication_factor=2, write_consistency_factor=1)
    index.warm_up()
    assert client.collection_exists("chunks")
    assert (seen["shard_number"], seen["replication_factor"], seen["write_consistency_factor"]) == (3, 2, 1)
    index.close()
    client.close()


def test_without_layout_settings_the_server_defaults_apply() -> None:
    client = QdrantClient(":memory:")
    QdrantIndex(client, "chunks", dense_dim=8).warm_up()
    assert client.get_collection("chunks").config.params.replication_factor in (None, 1)
    client.close()


def test_layout_comes_from_cairn_settings_and_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAIRN_QDRANT_REPLICATION_FACTOR", "2")
    monkeypatch.setenv("CAIRN_QDRANT_SHARD_NUMBER", "6")
    settings = Settings(qdrant_url="http://qdrant-0:6333")
    index = build_index(settings, 384)
    assert isinstance(index, QdrantIndex)
    assert (index.shard_number, index.replication_factor, index.write_consistency_factor) == (6, 2, None)
    with pytest.raises(ValueError, match="replication_factor must be >= 1"):
        QdrantIndex("http://qdrant-0:6333", "chunks", replication_factor=0)
