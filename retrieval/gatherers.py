"""Declarative gatherers: named, filtered views of the index, configured in YAML.

A gatherer is configuration, not code: which slice of the corpus (filters), how much it
contributes (top_k, weight), how long it may take (timeout_s) and how its dense and BM25 lists are
fused. The shipped examples live in `gatherers.yaml` beside this module; operators replace the file
with `CAIRN_SEARCH__GATHERERS_PATH`. Loading is strict (unknown fields, duplicate names and bad
values stop the start-up with the file name) because a typo in a filter would otherwise silently
turn a narrow gatherer into a broad one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import InvalidInput
from core.models import SearchFilters

DEFAULT_GATHERERS_FILE = Path(__file__).with_name("gatherers.yaml")
_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class UnknownGatherer(InvalidInput):
    code = "unknown_gatherer"


class MissingGathererParam(InvalidInput):
    code = "missing_gatherer_param"


class GathererSpec(BaseModel):
    """One gatherer as written in the YAML file. Fusion fields left unset use the service's
    measured defaults (`SearchSettings`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    description: str = ""
    filters: SearchFilters = Field(default_factory=SearchFilters)
    top_k: int = Field(default=10, ge=1, le=1000)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    weight: float = Field(default=1.0, gt=0, le=100)
    enabled: bool = True
    fusion: Literal["rrf", "dbsf"] | None = None
    rrf_k: int | None = Field(default=None, ge=1)
    dense_weight: float | None = Field(default=None, ge=0)
    sparse_weight: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> GathererSpec:
        if self.filters.as_of is not None:
            raise ValueError("a gatherer cannot pin as_of; the request's as_of (or now) applies")
        if self.fusion == "dbsf" and self.rrf_k is not None:
            raise ValueError("rrf_k only applies to fusion: rrf")
        return self

    @property
    def params(self) -> set[str]:
        """The request params ("{customer_id}") its filter values need."""
        found: set[str] = set()
        for values in self.filters.model_dump(exclude_none=True).values():
            if isinstance(values, list):
                for v in values:
                    found.update(_PARAM.findall(str(v)))
        return found

    def bind(self, params: Mapping[str, str]) -> SearchFilters:
        """Filters with "{param}" replaced by the request's value (values are literal: a param
        cannot inject another placeholder or a wildcard; keyword matching is exact)."""
        missing = sorted(self.params - set(params))
        if missing:
            raise MissingGathererParam(
                f"gatherer {self.name!r} needs params {missing}; pass them in the request's 'params'",
                gatherer=self.name,
            )

        def fill(v: str) -> str:
            return _PARAM.sub(lambda m: params[m.group(1)], v)

        data: dict[str, Any] = {}
        for key, values in self.filters.model_dump(exclude_none=True).items():
            data[key] = [fill(str(v)) for v in values] if isinstance(values, list) else values
        return SearchFilters.model_validate(data)


class GathererFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gatherers: list[GathererSpec]

    @model_validator(mode="after")
    def _unique(self) -> GathererFile:
        names = [g.name for g in self.gatherers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"gatherer names must be unique; repeated: {dupes}")
        return self


@dataclass(frozen=True)
class BoundGatherer:
    """A gatherer ready to run for one request: its spec and its filters with params filled."""

    spec: GathererSpec
    filters: SearchFilters


class GathererRegistry:
    """The configured gatherers, by name."""

    def __init__(self, specs: Sequence[GathererSpec], default: Sequence[str] = ("all",)) -> None:
        self._specs = {s.name: s for s in specs}
        unknown = [n for n in default if n not in self._specs]
        if unknown:
            raise ValueError(f"default gatherers {unknown} are not configured; known: {sorted(self._specs)}")
        self.default = tuple(default)

    @classmethod
    def from_yaml(cls, path: str | Path | None = None, default: Sequence[str] = ("all",)) -> GathererRegistry:
        file = Path(path) if path is not None else DEFAULT_GATHERERS_FILE
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8"))
            parsed = GathererFile.model_validate(raw)
        except OSError as exc:
            raise ValueError(f"cannot read the gatherers file {file}: {exc.strerror}") from exc
        except (yaml.YAMLError, ValidationError) as exc:
            raise ValueError(f"the gatherers file {file} is not valid: {exc}") from exc
        return cls(parsed.gatherers, default)

    def specs(self) -> list[GathererSpec]:
        return list(self._specs.values())

    def get(self, name: str) -> GathererSpec:
        spec = self._specs.get(name)
        if spec is None or not spec.enabled:
            known = sorted(n for n, s in self._specs.items() if s.enabled)
            raise UnknownGatherer(
                f"unknown or disabled gatherer {name!r}; known: {', '.join(known)}", gatherer=name
            )
        return spec

    def resolve(
        self, names: Sequence[str] | None, params: Mapping[str, str] | None = None
    ) -> list[BoundGatherer]:
        """The gatherers a request runs, in order, each bound to the request's params. Raises
        UnknownGatherer / MissingGathererParam before anything runs."""
        chosen = list(dict.fromkeys(names)) if names else list(self.default)
        specs = [self.get(n) for n in chosen]
        return [BoundGatherer(s, s.bind(params or {})) for s in specs]
