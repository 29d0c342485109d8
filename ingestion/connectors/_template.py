"""`{column}` text templates over a source row. Only plain names are allowed: str.format's
attribute and index access (`{x.__class__...}`) would let a template author read server
internals, so it is refused when the connector is created."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

from core.errors import InvalidInput

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def template_fields(template: str, what: str) -> list[str]:
    """The names a template uses; InvalidInput if it is malformed or reaches past a name."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidInput(f"{what} is not a valid template: {exc}", field="config") from None
    names = []
    for _literal, name, spec, _conversion in parsed:
        if name is None:
            continue
        if not _NAME.match(name) or (spec and "{" in spec):
            raise InvalidInput(
                f"{what}: '{{{name}}}' is not allowed; use plain column or field names like {{subject}}",
                field="config",
            )
        names.append(name)
    return names


class _Row(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def render(template: str, values: Mapping[str, Any]) -> str:
    """Missing or NULL values render as empty text, not as 'None'."""
    row = _Row({k: ("" if v is None else v) for k, v in values.items()})
    return template.format_map(row)
