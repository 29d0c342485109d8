"""OpenAI-compatible chat completions (OpenAI, Azure-style gateways, vLLM, llama.cpp server,
LiteLLM proxy...) over plain httpx, blocking and streaming (SSE `data:` chunks, `[DONE]`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from core.llm import Completion, CompletionRequest
from orchestration._text import estimate_tokens
from orchestration.errors import ProviderError, StreamInterrupted
from orchestration.providers._http import check_response, load_event, map_errors, parse_json, sse_events


class OpenAIProvider:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        name: str = "openai",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.name = name
        self.model = model
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _body(self, req: CompletionRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.model_dump() for m in req.messages],
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def complete(self, req: CompletionRequest) -> Completion:
        with map_errors(self.name):
            resp = await self._client.post(
                self._url, json=self._body(req, False), headers=self._headers, timeout=req.timeout_s
            )
        check_response(resp, self.name)
        body = parse_json(resp, self.name)
        try:
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason") or "stop"
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(
                f"{self.name} returned an unexpected response shape", provider=self.name
            ) from None
        usage = body.get("usage") or {}
        prompt = "".join(m.content for m in req.messages)
        return Completion(
            text=str(text),
            model=str(body.get("model") or self.model),
            provider=self.name,
            input_tokens=int(usage.get("prompt_tokens") or estimate_tokens(prompt)),
            output_tokens=int(usage.get("completion_tokens") or estimate_tokens(str(text))),
            finish_reason=str(finish),
        )

    def _deltas(self, event: dict[str, Any]) -> list[str]:
        if "error" in event:
            raise ProviderError(f"{self.name} reported an error mid-stream", provider=self.name)
        out: list[str] = []
        for choice in event.get("choices") or []:
            delta = (choice.get("delta") or {}).get("content")
            if delta:
                out.append(str(delta))
        return out

    async def stream(self, req: CompletionRequest) -> AsyncIterator[str]:
        emitted = False
        done = False
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
                    async for _, data in sse_events(resp):
                        if data.strip() == "[DONE]":
                            done = True
                            break
                        for delta in self._deltas(load_event(data, self.name)):
                            emitted = True
                            yield delta
        except ProviderError as exc:
            if emitted:
                raise StreamInterrupted(
                    f"{self.name} stream broke after it started", provider=self.name
                ) from exc
            raise
        if not done:
            raise StreamInterrupted(f"{self.name} stream ended without [DONE]", provider=self.name)
