"""Inline `[n]` markers -> verified citations. Pure functions, no I/O.

A model may emit any number in brackets; only markers that resolve to a chunk the retriever
returned survive. Survivors are renumbered densely 1..m in order of first appearance (so the
reader never sees a `[5]` next to four sources), and each citation's quote is a verbatim span of
its chunk with document offsets (chunk.char_start + offset in chunk.text). `MarkerRewriter`
works incrementally so a streamed answer is renumbered exactly as the final one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.models import RetrievedChunk
from orchestration._text import sentence_spans, terms
from orchestration.injection import flags_for
from orchestration.types import Citation, Quote

MARKER = re.compile(r"\[\^?(\d{1,4}(?:\s*,\s*\^?\d{1,4})*)\]")
_PARTIAL = re.compile(r"\[\^?[\d,\s^]*")
_MAX_PENDING = 32  # longest text held back while waiting to see whether "[" starts a marker


@dataclass(frozen=True)
class Marker:
    start: int
    end: int
    numbers: tuple[int, ...]


def parse_markers(text: str) -> list[Marker]:
    return [
        Marker(m.start(), m.end(), tuple(int(x.strip().lstrip("^")) for x in m.group(1).split(",")))
        for m in MARKER.finditer(text)
    ]


@dataclass
class MarkerRewriter:
    """Renumbers markers as text arrives: source k (1-based into the context) becomes the dense
    number of its first appearance; unresolvable markers are dropped with the space before them."""

    n_sources: int
    mapping: dict[int, int] = field(default_factory=dict)  # source index -> dense n
    dropped: int = 0
    _pending: str = ""

    def feed(self, delta: str) -> str:
        self._pending += delta
        out: list[str] = []
        while True:
            i = self._pending.find("[")
            head = self._pending if i < 0 else self._pending[:i]
            body = head.rstrip()
            out.append(body)
            self._pending = self._pending[len(body) :]
            if i < 0:
                break
            k = i - len(body)  # index of "[" after the held-back whitespace
            m = MARKER.match(self._pending, k)
            if m is not None:
                rendered = self._render(m.group(1))
                out.append(self._pending[:k] + rendered if rendered else "")
                self._pending = self._pending[m.end() :]
            elif _PARTIAL.fullmatch(self._pending, k) and len(self._pending) - k <= _MAX_PENDING:
                break  # may still become a marker: wait for more text
            else:
                out.append(self._pending[: k + 1])
                self._pending = self._pending[k + 1 :]
        return "".join(out)

    def _render(self, group: str) -> str:
        rendered: list[str] = []
        for raw in group.split(","):
            k = int(raw.strip().lstrip("^"))
            if not 1 <= k <= self.n_sources:
                self.dropped += 1
                continue
            n = self.mapping.setdefault(k, len(self.mapping) + 1)
            if f"[{n}]" not in rendered:
                rendered.append(f"[{n}]")
        return "".join(rendered)

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return rest


def renumber(text: str, n_sources: int) -> tuple[str, dict[int, int], int]:
    """(text with dense markers, source index -> n, number of markers dropped)."""
    rewriter = MarkerRewriter(n_sources)
    out = rewriter.feed(text) + rewriter.flush()
    return out, dict(rewriter.mapping), rewriter.dropped


def claims_by_marker(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """(claim, numbers) per marker group: the last sentence of the text before the marker (back
    to the previous marker), which is what a reader takes the marker to support."""
    out: list[tuple[str, tuple[int, ...]]] = []
    prev_end = 0
    markers = parse_markers(text)
    idx = 0
    while idx < len(markers):
        numbers = list(markers[idx].numbers)
        start = markers[idx].start
        # adjacent markers ("[1][2]") support the same claim
        while idx + 1 < len(markers) and not text[markers[idx].end : markers[idx + 1].start].strip():
            idx += 1
            numbers.extend(markers[idx].numbers)
        segment = text[prev_end:start]
        spans = sentence_spans(segment)
        claim = segment[spans[-1][0] : spans[-1][1]] if spans else ""
        if not claim.strip(" .,;:") and out:
            claim = out[-1][0]  # "... [1]. [2]" – the marker repeats the claim before it
        out.append((claim.strip(), tuple(dict.fromkeys(numbers))))
        prev_end = markers[idx].end
        idx += 1
    return out


def locate_quote(claim: str, chunk_text: str) -> tuple[int, int, bool]:
    """(start, end, supported): the claim itself when it is a verbatim span of the chunk,
    otherwise the chunk sentence sharing the most content terms with it."""
    stripped = claim.strip()
    spans = sentence_spans(chunk_text)
    if stripped:
        pos = chunk_text.find(stripped)
        if pos >= 0:  # widen to whole sentences so the quote reads on its own
            end = pos + len(stripped)
            start = min([s for s, e in spans if s <= pos < e] or [pos])
            end = max([e for s, e in spans if s < end <= e] or [end])
            return start, end, True
    claim_terms = set(terms(claim))
    best: tuple[float, int, int] = (0.0, 0, 0)
    for start, end in spans:
        overlap = len(claim_terms & set(terms(chunk_text[start:end])))
        score = overlap / (len(claim_terms) or 1)
        if score > best[0]:
            best = (score, start, end)
    if best[0] > 0.0:
        return best[1], best[2], best[0] >= 0.3
    start, end = spans[0] if spans else (0, len(chunk_text))
    return start, end, False


def build_citations(text: str, context: list[RetrievedChunk], mapping: dict[int, int]) -> list[Citation]:
    """One citation per cited source, ordered by n. `text` must already be renumbered."""
    inverse = {n: k for k, n in mapping.items()}
    found: dict[int, list[tuple[int, int, bool]]] = {}
    for claim, numbers in claims_by_marker(text):
        for n in numbers:
            if n in inverse:
                chunk = context[inverse[n] - 1]
                span = locate_quote(claim, chunk.text)
                if span not in found.setdefault(n, []):
                    found[n].append(span)
    citations: list[Citation] = []
    for n in sorted(found):
        chunk = context[inverse[n] - 1]
        quotes = [
            Quote(text=chunk.text[s:e], char_start=chunk.char_start + s, char_end=chunk.char_start + e)
            for s, e, _ in found[n]
        ]
        citations.append(
            Citation(
                n=n,
                doc_id=chunk.doc_id,
                chunk_id=chunk.chunk_id,
                version=chunk.version,
                title=chunk.title,
                source=chunk.source,
                page=chunk.page,
                quote=quotes[0].text,
                char_start=quotes[0].char_start,
                char_end=quotes[0].char_end,
                quotes=quotes,
                supported=any(ok for *_, ok in found[n]),
                flags=flags_for(f"{chunk.title}\n{chunk.text}"),
            )
        )
    return citations


def verify_citations(citations: list[Citation], context: list[RetrievedChunk]) -> list[str]:
    """Problems found (empty when every quote is verbatim at its offsets in a returned chunk)."""
    by_id = {c.chunk_id: c for c in context}
    problems: list[str] = []
    for cit in citations:
        chunk = by_id.get(cit.chunk_id)
        if chunk is None:
            problems.append(f"[{cit.n}] cites chunk {cit.chunk_id}, which was not retrieved")
            continue
        for q in [Quote(text=cit.quote, char_start=cit.char_start, char_end=cit.char_end), *cit.quotes]:
            local = q.char_start - chunk.char_start
            if not q.text or chunk.text[local : local + len(q.text)] != q.text:
                problems.append(f"[{cit.n}] quote is not verbatim at its offsets in chunk {cit.chunk_id}")
    return problems


def citation_coverage(text: str) -> float:
    """Share of the answer's sentences that carry at least one marker (inside or right after)."""
    plain_parts: list[str] = []
    positions: list[int] = []
    last = 0
    length = 0
    for m in MARKER.finditer(text):
        plain_parts.append(text[last : m.start()])
        length += m.start() - last
        positions.append(length)
        last = m.end()
    plain_parts.append(text[last:])
    plain = "".join(plain_parts)
    spans = sentence_spans(plain)
    if not spans:
        return 0.0
    marked = 0
    for i, (s, _) in enumerate(spans):
        limit = spans[i + 1][0] if i + 1 < len(spans) else len(plain)
        marked += any(s < p <= limit for p in positions)
    return marked / len(spans)


def groundedness(citations: list[Citation]) -> float:
    return sum(c.supported for c in citations) / len(citations) if citations else 0.0


@dataclass(frozen=True)
class GroundedText:
    answer: str
    citations: list[Citation]
    dropped_markers: int
    coverage: float
    groundedness: float


def ground_renumbered(
    text: str, context: list[RetrievedChunk], mapping: dict[int, int], dropped: int = 0
) -> GroundedText:
    """Citations for text a `MarkerRewriter` already renumbered (the streaming path). Any
    citation that fails verification is removed together with its markers."""
    citations = build_citations(text, context, mapping)
    bad = {c.n for c in citations for p in verify_citations([c], context) if p}
    if bad:
        inverse = {n: k for k, n in mapping.items()}

        def restore(m: re.Match[str]) -> str:
            numbers = parse_markers(m.group(0))[0].numbers
            return "".join(f"[{inverse[n]}]" for n in numbers if n not in bad and n in inverse)

        return ground(MARKER.sub(restore, text), context, dropped=dropped + len(bad))
    return GroundedText(text, citations, dropped, citation_coverage(text), groundedness(citations))


def ground(raw_text: str, context: list[RetrievedChunk], *, dropped: int = 0) -> GroundedText:
    """Renumber, cite and verify a model's raw output against the context it was given."""
    text, mapping, n_dropped = renumber(raw_text, len(context))
    return ground_renumbered(text, context, mapping, dropped + n_dropped)
