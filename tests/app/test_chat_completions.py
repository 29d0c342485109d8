"""POST /v1/chat/completions with the real `openai` SDK as the client, against a live server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import openai
import pytest

from core.settings import ModelProviderSettings, ModelsSettings
from tests.app.api import ADMIN, Api, parse_sse
from tests.orchestration.fake_llm_server import FakeLLMServer, Reply, Stream, openai_completion, openai_stream

pytestmark = pytest.mark.integration

NOT_FOUND = "I could not find an answer to this in the knowledge base."
REFUND = (
    "Refund policy. Customers may request a full refund within 30 days of purchase. "
    "Refunds are issued to the original payment method within five business days."
)
QUESTION = "How many days do customers have to request a refund?"


def sdk(url: str, key: str = ADMIN) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


@pytest.fixture
def server(live_server) -> Iterator[str]:  # type: ignore[no-untyped-def]
    url = live_server()
    with httpx.Client(base_url=url, timeout=60) as http:
        Api(http).ingest("refunds.txt", REFUND, acl=["tenant:*"])  # type: ignore[arg-type]
    yield url


def test_workflow_model_answers_with_verified_citations(server: str) -> None:
    with sdk(server) as client:
        completion = client.chat.completions.create(
            model="grounded_qa",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello, how can I help?"},
                {"role": "user", "content": QUESTION},
            ],
        )
    message = completion.choices[0].message
    assert completion.object == "chat.completion" and completion.model == "grounded_qa"
    assert completion.choices[0].finish_reason == "stop"
    assert message.role == "assistant" and "30 days" in (message.content or "") and "[1]" in (message.content or "")
    citations = message.model_extra["citations"]  # type: ignore[index]
    assert [c["n"] for c in citations] == [1]
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    run_id = completion.model_extra["cairn"]["run_id"]  # type: ignore[index]
    with httpx.Client(base_url=server, timeout=60) as http:
        api = Api(http)  # type: ignore[arg-type]
        hits = api.search(QUESTION, filters={"doc_ids": [citations[0]["doc_id"]]})
        chunk = next(h for h in hits if h["chunk_id"] == citations[0]["chunk_id"])
        assert citations[0]["quote"] in chunk["text"]
        run = api.run(run_id)
    assert run["workflow"] == "grounded_qa" and run["question"] == QUESTION
    assert run["result"]["answer"] == message.content


def test_workflow_model_streams_openai_chunks(server: str) -> None:
    with sdk(server) as client:
        expected = client.chat.completions.create(model="grounded_qa", messages=[{"role": "user", "content": QUESTION}])
        chunks = list(
            client.chat.completions.create(
                model="grounded_qa",
                messages=[{"role": "user", "content": QUESTION}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text == expected.choices[0].message.content and len(with_choices) > 3
    last = with_choices[-1].choices[0]
    assert last.finish_reason == "stop"
    assert last.delta.model_extra["citations"][0]["n"] == 1  # type: ignore[index]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0

    # on the wire: `data:` lines only, ending with OpenAI's terminator
    body = {"model": "grounded_qa", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
    with httpx.Client(base_url=server, timeout=60) as http:
        raw = http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {ADMIN}"})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.rstrip().endswith("data: [DONE]")
    assert {name for name, _ in parse_sse(raw.text)} == {"message"}


def test_workflow_model_abstains_in_both_modes(server: str) -> None:
    messages = [{"role": "user", "content": "Who won the football world cup in 1954?"}]
    with sdk(server) as client:
        completion = client.chat.completions.create(model="grounded_qa", messages=messages)  # type: ignore[arg-type]
        streamed = list(client.chat.completions.create(model="grounded_qa", messages=messages, stream=True))  # type: ignore[arg-type]
    assert completion.choices[0].message.content == NOT_FOUND
    assert completion.model_extra["cairn"]["abstained"] is True  # type: ignore[index]
    assert completion.choices[0].message.model_extra["citations"] == []  # type: ignore[index]
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == NOT_FOUND


def test_unknown_model_and_missing_key(server: str) -> None:
    with sdk(server) as client:
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "hi"}])
        listed = {m.id: m.owned_by for m in client.models.list()}
    assert listed["grounded_qa"] == "cairn-workflow" and listed["local"] == "cairn-alias"
    with sdk(server, key="not-a-key") as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="grounded_qa", messages=[{"role": "user", "content": "hi"}])


@contextmanager
def fake_llm(script: list[Reply | Stream]) -> Iterator[FakeLLMServer]:
    """The fake OpenAI-protocol upstream on its own event loop thread (the live server has its
    own loop; the test body is synchronous)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = FakeLLMServer(script)
    asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_alias_models_go_through_the_gateway(make_container, live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    script: list[Reply | Stream] = [
        Reply(body=openai_completion("Paris is the capital of France.", 11, 7)),
        Stream(openai_stream(["Paris ", "is the ", "capital."])),
    ]
    with fake_llm(script) as upstream:
        models = ModelsSettings(
            providers={
                "upstream": ModelProviderSettings(kind="openai", model="gpt-test", base_url=f"{upstream.url}/v1"),
                "paid": ModelProviderSettings(
                    kind="openai", model="gpt-paid", base_url=f"{upstream.url}/v1", input_per_mtok=5.0
                ),
                "down": ModelProviderSettings(kind="openai", model="gpt-down", base_url="http://127.0.0.1:9/v1"),
            },
            aliases={"fast": ["upstream"], "premium": ["paid"], "broken": ["down"]},
            budgets_usd={"default": 0.0},  # this tenant may not spend anything
            max_retries=0,
        )
        url = live_server(make_container(tmp_path / "gw", models=models))
        with sdk(url) as client:
            messages = [{"role": "user", "content": "What is the capital of France?"}]
            done = client.chat.completions.create(model="fast", messages=messages, max_tokens=20)  # type: ignore[arg-type]
            chunks = list(client.chat.completions.create(model="fast", messages=messages, stream=True))  # type: ignore[arg-type]
            with pytest.raises(openai.RateLimitError) as limited:
                client.chat.completions.create(model="premium", messages=messages)  # type: ignore[arg-type]
            with pytest.raises(openai.InternalServerError) as down:
                client.chat.completions.create(model="broken", messages=messages)  # type: ignore[arg-type]
        sent = upstream.requests[0].body
    assert done.choices[0].message.content == "Paris is the capital of France."
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (11, 7)  # type: ignore[union-attr]
    assert done.model_extra["cairn"]["provider"] == "upstream"  # type: ignore[index]
    assert sent["model"] == "gpt-test" and sent["max_tokens"] == 20
    assert sent["messages"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Paris is the capital."
    assert limited.value.status_code == 429 and limited.value.response.headers["retry-after"] == "3600"
    assert limited.value.body["code"] == "budget_exhausted"  # type: ignore[index]
    assert down.value.status_code == 503 and down.value.body["code"] == "provider_error"  # type: ignore[index]
