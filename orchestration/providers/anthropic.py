"""Anthropic Messages API over plain httpx, blocking and streaming.

System messages go to the top-level `system` field (the API has no system role); the stream is
typed SSE (`message_start`, `content_block_delta`, `message_delta`, `message_stop`, `error`), and a
stream that ends before `message_stop` is treated as cut off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from core.llm import Completion, CompletionRequest
from orchestration._text import estimate_tokens
from orchestration.errors import ProviderError, StreamInterrupted
from orchestration.providers._http import check_response, load_event, map_errors, parse_json, sse_events

API_VERSION = "2023-06-01"
_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class AnthropicProvider:
    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str = "https://api.anthropic.com",
        name: str = "anthropic",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.name = name
        self.model = model
        self._url = base_url.rstrip("/") + "/v1/messages"
        self._headers = {"anthropic-version": API_VERSION, **({"x-api-key": api_key} if api_key else {})}
        self._client = client or httpx.AsyncClient()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _body(self, req: CompletionRequest, stream: bool) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in req.messages if m.role == "system")
        messages = [{"role": m.role, "content": m.content} for m in req.messages if m.role != "system"]
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": req.max_tokens,
            "temperature": min(req.temperature, 1.0),
            "messages": messages or [{"role": "user", "content": req.query or ""}],
            "stream": stream,
        }
        if system:
            body["system"] = system
        return body

    async def complete(self, req: CompletionRequest) -> Completion:
        with map_errors(self.name):
            resp = await self._client.post(
                self._url, json=self._body(req, False), headers=self._headers, timeout=req.timeout_s
            )
        check_response(resp, self.name)
        body = parse_json(resp, self.name)
        blocks = body.get("content")
        if not isinstance(blocks, list):
            raise ProviderError(f"{self.name} returned an unexpected response shape", provider=self.name)
        text = "".join(
            str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text"
        )
        usage = body.get("usage") or {}
        prompt = "".join(m.content for m in req.messages)
        return Completion(
            text=text,
            model=str(body.get("model") or self.model),
            provider=self.name,
            input_tokens=int(usage.get("input_tokens") or estimate_tokens(prompt)),
            output_tokens=int(usage.get("output_tokens") or estimate_tokens(text)),
            finish_reason=_STOP_REASONS.get(
                str(body.get("stop_reason")), str(body.get("stop_reason") or "stop")
            ),
        )

    def _delta(self, event: str, data: dict[str, Any]) -> str | None:
        kind = data.get("type", event)
        if kind == "error":
            raise ProviderError(f"{self.name} reported an error mid-stream", provider=self.name)
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return str(delta.get("text", ""))
        return None

    async def stream(self, req: CompletionRequest) -> AsyncIterator[str]:
        emitted = False
        stopped = False
        try:
            with map_errors(self.name):
                async with self._client.stream(
                    "POST",
                    self._url,
                    json=self._body(req, True),
                    headers=self._headers,
                    timeout=req.timeout_s,
                ) as resp:
                    if resp.status_code >= 400:
                        await resp.aread()
                    check_response(resp, self.name)
                    async for event, data in sse_events(resp):
                        payload = load_event(data, self.name)
                        if payload.get("type", event) == "message_stop":
                            stopped = True
                            break
                        text = self._delta(event, payload)
                        if text:
                            emitted = True
                            yield text
        except ProviderError as exc:
            if emitted:
                raise StreamInterrupted(
                    f"{self.name} stream broke after it started", provider=self.name
                ) from exc
            raise
        if not stopped:
            raise StreamInterrupted(f"{self.name} stream ended before message_stop", provider=self.name)
