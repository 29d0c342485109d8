"""Token-bounded chunking that keeps document structure and exact offsets.

Every chunk is a slice of `ParsedDocument.text` (`text == doc.text[char_start:char_end]`), so a
citation's quote can always be checked against the stored document. Chunks hold at most
`max_tokens` tokens as counted by the embedding model's tokenizer, because the model silently
truncates anything longer and that tail would be unsearchable.

How a document is cut, in order of preference:
1. whole elements, packed greedily; a new top-level section starts a new chunk unless the chunk
   so far is tiny (a lone heading would make a useless chunk);
2. an element longer than `max_tokens` is split at sentence (and line) boundaries;
3. a sentence longer than `max_tokens` at word boundaries; a "word" longer than that (a URL, a
   base64 blob) at character positions.
Consecutive chunks of the same section share up to `overlap_tokens` tokens, taken as whole
sentences when they fit, else as trailing words.

Each piece is tokenised once and counts are summed; the final text of every chunk is counted once
more, and a chunk that a non-additive tokenizer pushes over the limit gives back its last piece.
"""

from __future__ import annotations

import bisect
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from core.models import ChunkDraft, ParsedDocument
from core.protocols import TokenCounter

_SENTENCE_END = re.compile(r"(?<=[.!?\u2026])[\"'\u201d\u2019)\]]*\s+|\s*\n\s*")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class _Unit:
    """A span of doc.text that is never split further once made, with its token count."""

    start: int
    end: int
    tokens: int
    element: int
    first_of_element: bool


class TokenChunker:
    """Splits a `ParsedDocument` into `ChunkDraft`s of at most `max_tokens` tokens.

    `counter` must count like the embedding model (word pieces, no special tokens).
    `min_section_tokens` is the size below which a chunk absorbs the start of the next top-level
    section instead of being closed; it defaults to an eighth of `max_tokens`.
    """

    def __init__(self, counter: TokenCounter, max_tokens: int = 256, overlap_tokens: int = 32,
                 *, min_section_tokens: int | None = None) -> None:
        if max_tokens < 8:
            raise ValueError(f"max_tokens must be at least 8, got {max_tokens}")
        if not 0 <= overlap_tokens <= max_tokens // 2:
            raise ValueError(
                f"overlap_tokens must be between 0 and half of max_tokens ({max_tokens // 2}), "
                f"got {overlap_tokens}")
        self._counter = counter
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.min_section_tokens = max_tokens // 8 if min_section_tokens is None else min_section_tokens

    def chunk(self, doc: ParsedDocument) -> list[ChunkDraft]:
        pending = deque(self._units(doc))
        starts = [e.char_start for e in doc.elements]
        chunks: list[ChunkDraft] = []
        current: list[_Unit] = []
        used = 0
        overlap_start: int | None = None
        while pending or current:
            unit = pending.popleft() if pending else None
            if current and (unit is None or self._closes(doc, current, used, unit)):
                if unit is not None:
                    pending.appendleft(unit)
                chunks.append(self._close(doc, current, overlap_start, starts, pending, len(chunks)))
                overlap_start, used = self._overlap(doc, chunks[-1], pending[0]) if pending else (None, 0)
                current = []
                continue
            assert unit is not None
            if not current and used + unit.tokens > self.max_tokens:
                overlap_start, used = None, 0
            current.append(unit)
            used += unit.tokens
        return chunks

    def _closes(self, doc: ParsedDocument, current: list[_Unit], used: int, unit: _Unit) -> bool:
        """Close the open chunk before `unit`: it would overflow, or a new top-level section
        starts and the chunk is not tiny."""
        if used + unit.tokens > self.max_tokens:
            return True
        new_section = unit.first_of_element and self._top(doc, unit) != self._top(doc, current[0])
        return new_section and used >= self.min_section_tokens

    # ---- units ---------------------------------------------------------------------------

    def _units(self, doc: ParsedDocument) -> list[_Unit]:
        units: list[_Unit] = []
        for index, element in enumerate(doc.elements):
            spans = self._fit(doc.text, element.char_start, element.char_end, _sentence_spans)
            units.extend(_Unit(s, e, n, index, i == 0) for i, (s, e, n) in enumerate(spans))
        return units

    def _fit(self, text: str, start: int, end: int, split: _Splitter) -> list[tuple[int, int, int]]:
        """The span whole if it fits, else its parts (sentences, then words, then characters);
        each part is counted once."""
        tokens = self._counter.count_tokens(text[start:end])
        if tokens <= self.max_tokens:
            return [(start, end, tokens)] if tokens > 0 or end > start else []
        parts = split(text, start, end)
        if len(parts) <= 1:
            if split is _sentence_spans:
                return self._fit(text, start, end, _word_spans)
            return self._halves(text, start, end)
        finer = _word_spans if split is _sentence_spans else _no_split
        return [piece for s, e in parts for piece in self._fit(text, s, e, finer)]

    def _halves(self, text: str, start: int, end: int) -> list[tuple[int, int, int]]:
        middle = start + max(1, (end - start) // 2)
        return [*self._fit(text, start, middle, _no_split), *self._fit(text, middle, end, _no_split)]

    # ---- chunks --------------------------------------------------------------------------

    def _close(self, doc: ParsedDocument, units: list[_Unit], overlap_start: int | None,
               starts: list[int], pending: deque[_Unit], index: int) -> ChunkDraft:
        """Verify the real count of the chunk's text; give pieces back until it fits."""
        while True:
            start = units[0].start if overlap_start is None else overlap_start
            end = units[-1].end
            tokens = self._counter.count_tokens(doc.text[start:end])
            if tokens <= self.max_tokens:
                break
            if overlap_start is not None:
                overlap_start = None
            elif len(units) > 1:
                pending.appendleft(units.pop())
            else:
                halves = self._halves(doc.text, units[0].start, units[0].end)
                first = units[0]
                units[0] = _Unit(halves[0][0], halves[0][1], halves[0][2], first.element,
                                 first.first_of_element)
                for s, e, n in reversed(halves[1:]):
                    pending.appendleft(_Unit(s, e, n, first.element, False))
        element = doc.elements[max(0, bisect.bisect_right(starts, start) - 1)]
        return ChunkDraft(index=index, text=doc.text[start:end], char_start=start, char_end=end,
                          token_count=tokens, section_path=list(doc.elements[units[0].element].section_path),
                          page=element.page)

    def _overlap(self, doc: ParsedDocument, previous: ChunkDraft, following: _Unit) -> tuple[int | None, int]:
        """Where the next chunk starts to repeat the tail of `previous`, and how many tokens that
        costs. Only inside one section; whole sentences when they fit, else trailing words."""
        budget = min(self.overlap_tokens, self.max_tokens - following.tokens)
        if budget <= 0 or doc.elements[following.element].section_path != previous.section_path:
            return None, 0
        words = list(_WORD.finditer(doc.text, previous.char_start, previous.char_end))
        taken, start = 0, None
        for word in reversed(words[1:]):
            tokens = self._counter.count_tokens(word.group())
            if taken + tokens > budget:
                break
            taken, start = taken + tokens, word.start()
        if start is None:
            return None, 0
        sentence = _first_sentence_start(doc.text, start, previous.char_end)
        if sentence is not None:
            return sentence, self._counter.count_tokens(doc.text[sentence:previous.char_end])
        return start, taken

    @staticmethod
    def _top(doc: ParsedDocument, unit: _Unit) -> str | None:
        path = doc.elements[unit.element].section_path
        return path[0] if path else None


_Splitter = Callable[[str, int, int], list[tuple[int, int]]]


def _sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return _spans_between(text, start, end, _SENTENCE_END)


def _word_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]


def _no_split(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(start, end)]


def _spans_between(text: str, start: int, end: int, boundary: re.Pattern[str]) -> list[tuple[int, int]]:
    spans, cursor = [], start
    for match in boundary.finditer(text, start, end):
        if match.start() > cursor:
            spans.append((cursor, match.start()))
        cursor = match.end()
    if cursor < end:
        spans.append((cursor, end))
    return spans


def _first_sentence_start(text: str, start: int, end: int) -> int | None:
    """The earliest sentence start in [start, end), if there is one."""
    if start == 0 or text[start - 1] in "\n" or _SENTENCE_END.match(text, _line_back(text, start)):
        return start
    for match in _SENTENCE_END.finditer(text, start, end):
        if match.end() < end:
            return match.end()
    return None


def _line_back(text: str, position: int) -> int:
    while position > 0 and text[position - 1].isspace():
        position -= 1
    return position
