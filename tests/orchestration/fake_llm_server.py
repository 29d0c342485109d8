"""A tiny real HTTP/1.1 server speaking just enough of the OpenAI and Anthropic protocols to test
the providers and the gateway: scripted replies, SSE streams (optionally cut mid-way), slow
answers, 429 with Retry-After, 500s and malformed bodies. Runs on 127.0.0.1 with a free port."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON, str -> raw text
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Stream:
    events: list[str]  # raw SSE blocks, each written as one chunk
    cut_after: int | None = None  # close the connection after this many events
    delay: float = 0.0  # before each event


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeLLMServer:
    def __init__(self, script: list[Reply | Stream]) -> None:
        self.script = list(script)
        self.requests: list[Request] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aenter__(self) -> FakeLLMServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()  # idle keep-alive connections: their handlers see EOF and return
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _next(self) -> Reply | Stream:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                raw = await reader.readexactly(int(headers.get("content-length", 0)))
                self.requests.append(Request(method, path, headers, json.loads(raw or b"{}")))
                if not await self._respond(self._next(), writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _respond(self, step: Reply | Stream, writer: asyncio.StreamWriter) -> bool:
        """Returns False when the connection must be dropped."""
        if isinstance(step, Reply):
            await asyncio.sleep(step.delay)
            body = step.body if isinstance(step.body, str) else json.dumps(step.body)
            data = body.encode()
            head = {"content-type": "application/json", "content-length": str(len(data)), **step.headers}
            writer.write(self._head(step.status, head) + data)
            await writer.drain()
            return True
        writer.write(self._head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"}))
        for i, event in enumerate(step.events):
            if step.cut_after is not None and i >= step.cut_after:
                await writer.drain()
                return False
            await asyncio.sleep(step.delay)
            chunk = event.encode()
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    @staticmethod
    def _head(status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ---- protocol payloads ---------------------------------------------------------------------


def openai_completion(text: str, prompt_tokens: int = 12, completion_tokens: int = 7) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }


def openai_stream(parts: list[str], done: bool = True) -> list[str]:
    events = [
        "data: "
        + json.dumps({"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]})
        + "\n\n"
        for p in parts
    ]
    return events + (["data: [DONE]\n\n"] if done else [])


def anthropic_message(text: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 20, "output_tokens": 9},
    }


def anthropic_stream(parts: list[str], stop: bool = True) -> list[str]:
    def ev(name: str, data: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

    events = [ev("message_start", {"message": {"usage": {"input_tokens": 20}}})]
    events.append(ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
    events += [
        ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p}}) for p in parts
    ]
    events.append(ev("content_block_stop", {"index": 0}))
    events.append(ev("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}))
    return events + ([ev("message_stop", {})] if stop else [])
