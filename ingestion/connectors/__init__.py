"""Shipped connectors, one per file, each the only place its source library is used.

`parse_config` turns a stored or submitted config into its typed model; the model checks its
own access against the operator's `AccessPolicy` and builds a fresh connector per sync.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from core.connectors import Connector
from core.errors import InvalidInput
from ingestion.connectors._policy import AccessPolicy
from ingestion.connectors.filesystem import FilesystemConfig
from ingestion.connectors.http_json import HttpJsonConfig
from ingestion.connectors.sql import SqlConfig

ConnectorConfig = Annotated[FilesystemConfig | SqlConfig | HttpJsonConfig, Field(discriminator="kind")]
KINDS = ("filesystem", "sql", "http_json")
_ADAPTER: TypeAdapter[FilesystemConfig | SqlConfig | HttpJsonConfig] = TypeAdapter(ConnectorConfig)


def parse_config(kind: str, config: dict[str, Any]) -> FilesystemConfig | SqlConfig | HttpJsonConfig:
    """InvalidInput naming each wrong field, so the API caller can fix the config."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown connector kind {kind!r}; use one of {', '.join(KINDS)}", field="kind")
    try:
        return _ADAPTER.validate_python({**config, "kind": kind})
    except ValidationError as exc:
        problems = "; ".join(
            (".".join(str(p) for p in err["loc"][1:]) or "config") + f": {err['msg']}" for err in exc.errors()
        )
        raise InvalidInput(f"the {kind} connector config is not valid: {problems}", field="config") from None


def build_connector(kind: str, config: dict[str, Any], policy: AccessPolicy) -> Connector:
    parsed = parse_config(kind, config)
    parsed.check_access(policy)
    return parsed.build(policy)


__all__ = ["KINDS", "AccessPolicy", "ConnectorConfig", "build_connector", "parse_config"]
