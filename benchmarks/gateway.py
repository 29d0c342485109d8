"""Gateway overhead and parallel-step speed-up against a local OpenAI-compatible server; prints JSON.

    .venv/bin/python benchmarks/gateway.py [--calls 300] [--delay-ms 50]

1. p50/p95 of a direct httpx POST vs the same call through OpenAIProvider and through
   ModelGateway (alias routing, breaker, accounting) to the same local server.
2. A workflow `parallel` step of four generate calls vs the same four calls as serial steps,
   the server answering each after --delay-ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.llm import ChatMessage, CompletionRequest  # noqa: E402
from core.models import Principal  # noqa: E402
from orchestration.gateway.config import GatewayConfig, ProviderPolicy  # noqa: E402
from orchestration.gateway.gateway import ModelGateway  # noqa: E402
from orchestration.providers.openai import OpenAIProvider  # noqa: E402
from orchestration.workflows.engine import WorkflowEngine  # noqa: E402
from orchestration.workflows.registry import WorkflowRegistry  # noqa: E402
from orchestration.workflows.spec import parse_spec  # noqa: E402
from orchestration.workflows.store import InMemoryRunStore  # noqa: E402
from tests.orchestration.fake_llm_server import FakeLLMServer, Reply, openai_completion  # noqa: E402

PARALLEL = """
name: fan_out
version: 1
steps:
  - id: fan
    type: parallel
    max_concurrency: 4
    steps:
{children}
output: [fan]
"""
SERIAL = "name: serial\nversion: 1\nsteps:\n{children}\noutput: [s3]\n"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 3)


async def timed(n: int, call: object) -> list[float]:
    out: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        await call()  # type: ignore[operator]
        out.append((time.perf_counter() - t) * 1000)
    return out


async def overhead(calls: int) -> dict[str, object]:
    req = CompletionRequest(
        model="fast", messages=[ChatMessage(role="user", content="Hi?")], tenant_id="bench"
    )
    async with FakeLLMServer([Reply(body=openai_completion("Hello."))]) as server:
        async with httpx.AsyncClient() as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "Hi?"}], "max_tokens": 512}

            async def direct() -> None:
                (await client.post(server.url + "/chat/completions", json=body)).json()

            provider = OpenAIProvider(base_url=server.url, model="m", name="remote")
            gw = ModelGateway(
                {"remote": provider},
                GatewayConfig(aliases={"fast": ["remote"]}, providers={"remote": ProviderPolicy()}),
            )
            await timed(20, direct)  # warm up connections
            await timed(20, lambda: gw.complete(req))
            d = await timed(calls, direct)
            p = await timed(calls, lambda: provider.complete(req))
            g = await timed(calls, lambda: gw.complete(req))
            await provider.aclose()
    return {
        "calls": calls,
        "direct_httpx_ms": {"p50": pct(d, 0.5), "p95": pct(d, 0.95)},
        "provider_ms": {"p50": pct(p, 0.5), "p95": pct(p, 0.95)},
        "gateway_ms": {"p50": pct(g, 0.5), "p95": pct(g, 0.95)},
        "gateway_overhead_ms_p50": round(statistics.median(g) - statistics.median(d), 3),
    }


async def parallel_vs_serial(delay_ms: float) -> dict[str, object]:
    gen = "{ind}- {{id: {id}, type: generate, model: fast, prompt: 'part {i}'{extra}}}"
    children = "\n".join(gen.format(ind="      ", id=f"p{i}", i=i, extra="") for i in range(4))
    serial = "\n".join(gen.format(ind="  ", id=f"s{i}", i=i, extra="") for i in range(4))
    registry = WorkflowRegistry(
        [parse_spec(PARALLEL.format(children=children)), parse_spec(SERIAL.format(children=serial))]
    )
    principal = Principal(tenant_id="bench", user="bench")
    async with FakeLLMServer([Reply(body=openai_completion("ok"), delay=delay_ms / 1000)]) as server:
        provider = OpenAIProvider(base_url=server.url, model="m", name="remote")
        gw = ModelGateway(
            {"remote": provider},
            GatewayConfig(aliases={"fast": ["remote"]}, providers={"remote": ProviderPolicy()}),
        )
        engine = WorkflowEngine(InMemoryRunStore(), _no_retriever, gw, registry=registry)
        results: dict[str, float] = {}
        for name in ("fan_out", "serial"):
            samples = []
            for _ in range(5):
                t = time.perf_counter()
                run = await engine.start(name, principal, {"question": "q"})
                assert run.status == "succeeded", run.reason
                samples.append((time.perf_counter() - t) * 1000)
            results[name] = round(statistics.median(samples), 2)
        await provider.aclose()
    return {
        "server_delay_ms": delay_ms,
        "parallel_4_ms": results["fan_out"],
        "serial_4_ms": results["serial"],
        "speedup": round(results["serial"] / results["fan_out"], 2),
    }


async def _no_retriever(*args: object, **kwargs: object) -> list[object]:
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    args = parser.parse_args()

    async def go() -> dict[str, object]:
        return {
            "benchmark": "gateway",
            "overhead": await overhead(args.calls),
            "parallel_step": await parallel_vs_serial(args.delay_ms),
        }

    print(json.dumps(asyncio.run(go()), indent=2))


if __name__ == "__main__":
    main()
