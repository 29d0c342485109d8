"""Tokenising, stemming and sentence splitting shared by the extractive provider and the
citation checks. Sentence spans are offsets into the original text, so anything built from
them can be copied verbatim and located again."""

from __future__ import annotations

import re
from functools import lru_cache

import snowballstemmer

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
# a sentence ends at . ! ? (plus closing quotes/brackets) followed by space and a likely start
_BOUNDARY = re.compile(r"[.!?…][\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9À-Ý])")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc inc ltd co corp fig no vol ed eg ie al approx dept est gen "
    "gov lt col sgt capt rev u.s e.g i.e a.m p.m jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
STOPWORDS = frozenset(
    """a about above after again against all am an and any are aren't as at be because been before
    being below between both but by can could did didn't do does doesn't doing don't down during each
    few for from further had has have having he her here hers herself him himself his how i if in into
    is isn't it it's its itself just let me more most my myself no nor not of off on once only or other
    our ours ourselves out over own same she should so some such than that that's the their theirs them
    themselves then there these they this those through to too under until up very was wasn't we were
    what when where which while who whom whose why will with would you your yours yourself yourselves
    also many much one s t can't won't shall may might must upon within without per via whether
    name named called kind type""".split()
)

_stemmer = snowballstemmer.stemmer("english")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    return str(_stemmer.stemWord(word))


def words(text: str) -> list[str]:
    """Lower-cased word tokens (apostrophes kept inside words)."""
    return [m.group(0).lower().replace("’", "'") for m in _WORD.finditer(text)]


def terms(text: str) -> list[str]:
    """Stemmed content terms: what relevance is scored on. Numbers are kept (they are often
    exactly what a question asks about)."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def _is_abbreviation(text: str, dot_index: int) -> bool:
    start = dot_index
    while start > 0 and (text[start - 1].isalpha() or text[start - 1] == "."):
        start -= 1
    token = text[start:dot_index].lower()
    if not token:
        return False
    return token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha())


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, whitespace trimmed. Lines are split first so headings and
    list items never merge with the following sentence."""
    spans: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", text):
        seg_start = line.start()
        for b in _BOUNDARY.finditer(text, line.start(), line.end()):
            if text[b.start()] == "." and _is_abbreviation(text, b.start()):
                continue
            end = b.end()
            while end > b.start() and text[end - 1].isspace():
                end -= 1
            spans.append((seg_start, end))
            seg_start = b.end()
        spans.append((seg_start, line.end()))
    out: list[tuple[int, int]] = []
    for start, end in spans:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            out.append((start, end))
    return out


def estimate_tokens(text: str) -> int:
    """~4 characters per token: close enough for budgets when a provider reports no usage."""
    return (len(text) + 3) // 4
