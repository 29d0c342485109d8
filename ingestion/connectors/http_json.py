"""An HTTP JSON API (a ticketing or wiki API) read page by page with httpx. Pages are followed by
a next link or a page number; fields are picked with dotted paths. A page that keeps failing is
reported as a failure and the other pages still index; the listing is then incomplete, so
`list_ids` refuses to answer and no document is deleted on the strength of it."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from core.connectors import SourceDocument, SourceFailure, SourceItem, SyncCheckpoint, map_acl, split_values
from core.errors import Unavailable
from ingestion.connectors._policy import AccessPolicy

MASK = "***"
_MAX_FAILING_PAGES = 3  # in a row: past that, the API is down rather than one page broken


class FieldMap(BaseModel):
    """Dotted paths into one item (`fields.body`, `assignees.0.name`)."""

    model_config = ConfigDict(extra="forbid")

    id: str = "id"
    title: str | None = "title"
    text: list[str] = Field(default_factory=lambda: ["body"], min_length=1)  # joined by blank lines
    updated_at: str | None = None
    acl: str | None = None
    tags: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)  # metadata key -> path


class HttpJsonConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["http_json"] = "http_json"
    url: str = Field(pattern=r"^https?://")
    token: str | None = None  # sent as `Authorization: Bearer <token>`; never returned
    headers: dict[str, str] = Field(default_factory=dict)  # values never returned either
    items_path: str = ""  # "" = the body is the list of items
    pagination: Literal["none", "next_link", "page"] = "next_link"
    next_path: str = "next"
    page_param: str = "page"
    page_start: int = 1
    page_size_param: str | None = None
    page_size: int = Field(default=100, ge=1, le=10_000)
    fields: FieldMap = Field(default_factory=FieldMap)
    acl_prefix: Literal["group:", "user:"] = "group:"
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    retries: int = Field(default=2, ge=0, le=10)
    max_pages: int = Field(default=10_000, ge=1)

    def check_access(self, policy: AccessPolicy) -> None:
        policy.check_host(urlsplit(self.url).hostname, "API")

    def public(self) -> dict[str, Any]:
        data = self.model_dump()
        data["token"] = MASK if self.token else None
        data["headers"] = dict.fromkeys(self.headers, MASK)
        return data

    def build(self, policy: AccessPolicy) -> HttpJsonConnector:
        return HttpJsonConnector(self)


def pick(data: Any, path: str) -> Any:
    """`a.b.0.c` into nested dicts / lists; None when any step is missing."""
    if not path:
        return data
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class _PageFailed(Exception):
    def __init__(self, reason: str, fatal: bool = False) -> None:
        super().__init__(reason)
        self.fatal = fatal  # refused credentials: every other page would be refused too


class HttpJsonConnector:
    def __init__(self, config: HttpJsonConfig) -> None:
        self._config = config
        headers = dict(config.headers)
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        self._client = httpx.Client(timeout=config.timeout_s, headers=headers, follow_redirects=False)
        self._origin = urlsplit(config.url)[:2]
        self._listing: set[str] | None = None
        self._listing_errors: list[str] = []

    def _get(self, url: str, params: dict[str, Any], label: str) -> Any:
        """One page, retried with backoff on 5xx / 429 / transport errors."""
        reason = ""
        for attempt in range(self._config.retries + 1):
            if attempt:
                time.sleep(min(0.2 * 2 ** (attempt - 1), 5.0))
            try:
                # an empty `params` would drop the query string a next link carries
                r = self._client.get(url, params=params or None)
            except httpx.HTTPError as exc:
                reason = f"{label}: {exc.__class__.__name__} talking to the API"
                continue
            if r.status_code in (401, 403):
                raise _PageFailed(f"{label}: the API refused the credentials (HTTP {r.status_code})", fatal=True)
            if r.status_code == 429 or r.status_code >= 500:
                reason = f"{label}: HTTP {r.status_code}"
                continue
            if r.status_code >= 400:
                raise _PageFailed(f"{label}: HTTP {r.status_code}")
            try:
                return r.json()
            except ValueError:
                raise _PageFailed(f"{label}: the response is not JSON") from None
        raise _PageFailed(f"{reason} after {self._config.retries + 1} attempts")

    def _pages(self) -> Iterator[list[Any] | SourceFailure]:
        c = self._config
        url: str | None = c.url
        page, failing = c.page_start, 0
        for n in range(1, c.max_pages + 1):
            if url is None:
                return
            params: dict[str, Any] = {}
            if c.pagination == "page":
                params[c.page_param] = page
                if c.page_size_param:
                    params[c.page_size_param] = c.page_size
            label = f"page {page}" if c.pagination == "page" else f"page {n} ({url})"
            try:
                body = self._get(url, params, label)
            except _PageFailed as exc:
                failing += 1
                if c.pagination == "page" and not exc.fatal and failing < _MAX_FAILING_PAGES:
                    yield SourceFailure(reason=f"{exc}; the items on this page were not read")
                    page += 1
                    continue
                yield SourceFailure(reason=f"{exc}; this page and the pages after it were not read")
                return
            failing = 0
            items = pick(body, c.items_path)
            if not isinstance(items, list):
                yield SourceFailure(reason=f"{label}: no list of items at {c.items_path or 'the top level'!r}")
                return
            yield items
            if c.pagination == "none":
                return
            if c.pagination == "page":
                if not items or (c.page_size_param and len(items) < c.page_size):
                    return
                page += 1
                continue
            nxt = pick(body, c.next_path)
            url = urljoin(url, nxt) if isinstance(nxt, str) and nxt else None
            if url is not None and urlsplit(url)[:2] != self._origin:
                yield SourceFailure(reason=f"{label}: the next link leaves {self._origin[1]}; not followed "
                                    "(the token would go to another host)")
                return
        yield SourceFailure(reason=f"stopped after max_pages={c.max_pages}; later pages were not read")

    def poll(self, checkpoint: SyncCheckpoint) -> Iterator[SourceItem]:
        """Reads every page (a generic JSON API has no change cursor); unchanged items are
        skipped by the sync, and the ids seen answer `list_ids` without a second pass."""
        ids: set[str] = set()
        errors: list[str] = []
        for page in self._pages():
            if isinstance(page, SourceFailure):
                errors.append(page.reason)
                yield page
                continue
            for raw in page:
                item = self._item(raw)
                if item.external_id is not None:
                    ids.add(item.external_id)
                yield item
        self._listing, self._listing_errors = ids, errors

    def _item(self, raw: Any) -> SourceItem:
        f = self._config.fields
        ident = pick(raw, f.id)
        if ident is None or ident == "":
            return SourceFailure(reason=f"an item has no id at {f.id!r}")
        external_id = str(ident)
        body = "\n\n".join(t for t in (_text(pick(raw, p)).strip() for p in f.text) if t)
        if not body:
            return SourceFailure(external_id=external_id, reason=f"the item has no text at {', '.join(f.text)}")
        title = _text(pick(raw, f.title)).strip() if f.title else ""
        updated = _text(pick(raw, f.updated_at)) if f.updated_at else ""
        try:
            updated_at = datetime.fromisoformat(updated) if updated else None
        except ValueError:
            updated_at = None
        return SourceDocument(
            external_id=external_id, title=title or external_id, content=body.encode(),
            filename=re.sub(r"[^\w.-]", "_", external_id)[:100] + ".txt", content_type="text/plain",
            acl=map_acl(pick(raw, f.acl), self._config.acl_prefix) if f.acl else [],
            tags=split_values(pick(raw, f.tags)) if f.tags else [],
            metadata={k: pick(raw, p) for k, p in f.metadata.items()}, updated_at=updated_at,
        )

    def next_checkpoint(self) -> SyncCheckpoint:
        return SyncCheckpoint()

    def list_ids(self) -> set[str]:
        if self._listing is None:
            for _ in self.poll(SyncCheckpoint()):
                pass
        if self._listing_errors:
            raise Unavailable("the API listing is incomplete: " + "; ".join(self._listing_errors))
        return set(self._listing or ())

    def close(self) -> None:
        self._client.close()

