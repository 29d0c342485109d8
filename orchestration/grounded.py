"""The steps of a grounded answer, shared by `AnswerService` and the workflow engine:
prompt building, and turning a model's raw output into a verified answer or an abstention."""

from __future__ import annotations

from dataclasses import dataclass

from core.llm import INSUFFICIENT_EVIDENCE, ChatMessage, Completion
from core.models import RetrievedChunk
from orchestration.citations import GroundedText, ground
from orchestration.injection import SOURCES_ARE_DATA, fence_source
from orchestration.types import Citation

NOT_FOUND = "I could not find an answer to this in the knowledge base."
ABSTAIN_TOKEN = "INSUFFICIENT_EVIDENCE"

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources below. After every sentence, cite the "
    "sources it relies on as [n] (for example: The fee is 10 euros [2].). Prefer quoting the "
    "sources' own words. If the sources do not contain the answer, reply exactly "
    f"{ABSTAIN_TOKEN} and nothing else. {SOURCES_ARE_DATA}"
)


def render_sources(context: list[RetrievedChunk], max_chars: int = 48_000) -> str:
    """Numbered source blocks for remote models; [n] here is context[n - 1]. Each block is
    fenced data (orchestration.injection): a document cannot close its fence or forge another."""
    blocks: list[str] = []
    used = 0
    for i, chunk in enumerate(context, start=1):
        block = fence_source(i, chunk.title, chunk.text)
        if used + len(block) > max_chars:
            break
        blocks.append(block)
        used += len(block)
    return "\n\n".join(blocks)


def grounded_messages(question: str, context: list[RetrievedChunk]) -> list[ChatMessage]:
    return [
        ChatMessage(role="system", content=f"{SYSTEM_PROMPT}\n\nSources:\n{render_sources(context)}"),
        ChatMessage(role="user", content=question),
    ]


@dataclass(frozen=True)
class Decision:
    """A verified answer, or an abstention with the reason."""

    answer: str
    citations: list[Citation]
    abstained: bool
    reason: str
    coverage: float
    groundedness: float


def is_abstention(text: str, finish_reason: str | None = None) -> bool:
    return finish_reason == INSUFFICIENT_EVIDENCE or not text.strip() or ABSTAIN_TOKEN in text


def decide(
    text: str,
    context: list[RetrievedChunk],
    *,
    finish_reason: str | None = None,
    grounded: GroundedText | None = None,
    min_groundedness: float = 0.5,
) -> Decision:
    """Verify the citations; abstain unless at least one marker resolves to a chunk that
    supports its claim (an answer without verifiable evidence is not returned)."""
    if not context:
        return Decision(NOT_FOUND, [], True, "no_context", 0.0, 0.0)
    if is_abstention(text, finish_reason):
        return Decision(NOT_FOUND, [], True, "model_abstained", 0.0, 0.0)
    g = grounded or ground(text, context)
    if not g.citations:
        return Decision(NOT_FOUND, [], True, "no_valid_citation", g.coverage, 0.0)
    if g.groundedness < min_groundedness:
        return Decision(NOT_FOUND, [], True, "weakly_grounded", g.coverage, g.groundedness)
    return Decision(g.answer.strip(), g.citations, False, "", g.coverage, g.groundedness)


def completion_usage(completions: list[Completion]) -> dict[str, float | int]:
    return {
        "input_tokens": sum(c.input_tokens for c in completions),
        "output_tokens": sum(c.output_tokens for c in completions),
        "cost_usd": round(sum(c.cost_usd for c in completions), 6),
        "calls": len(completions),
    }
