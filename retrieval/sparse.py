"""BM25 sparse vectors whose IDF half is applied by the engine (Qdrant's IDF modifier).

A document vector holds, per term, BM25's saturated term frequency
`tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))`; a query vector holds 1.0 per distinct
term. The engine's dot product times `idf = ln(1 + (N - n + 0.5) / (n + 0.5))` is then Okapi
BM25, with N and n counted inside the engine, per tenant, as documents come and go, which no
encoder-side IDF could do.

Term ids are the first 4 bytes of blake2b(term): stable across processes, platforms and
versions (Python's `hash()` is salted per process), and within Qdrant's u32 index space.
Collisions at 32 bits are rare enough to only add a little noise to BM25.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache
from hashlib import blake2b

import snowballstemmer

from core.models import SparseVector

# The average chunk in tokenizer terms. Chunks are <= 256 word pieces, ~150-200 words; measured
# on SciFact abstracts this tokenizer keeps ~0.7 terms per word (212 words -> 150 terms), so a
# full chunk has ~105-140 terms, and a document's last chunk is usually shorter: 120.
DEFAULT_AVG_DOC_LEN = 120.0
MAX_TOKEN_CHARS = 64

ENGLISH_STOPWORDS = frozenset(
    """a about above after again against all am an and any are aren't as at be because been before
    being below between both but by can cannot could couldn't did didn't do does doesn't doing
    don't down during each few for from further had hadn't has hasn't have haven't having he her
    here hers herself him himself his how i if in into is isn't it it's its itself let's me more
    most mustn't my myself no nor not of off on once only or other ought our ours ourselves out
    over own same shan't she should shouldn't so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was wasn't we
    were weren't what when where which while who whom why will with won't would wouldn't you
    your yours yourself yourselves s t d ll m re ve don isn aren wasn weren hasn haven hadn doesn
    didn won wouldn shan shouldn couldn mustn also just i'm i've i'd i'll you're you've you'd
    you'll he's he'd he'll she's she'd she'll we're we've we'd we'll they're they've they'd
    they'll that's there's here's what's who's where's when's why's how's can't""".split()
)

# Word characters plus combining marks (without them Devanagari, Thai, ... words would split
# at every vowel sign). Underscores separate words, so snake_case identifiers match their parts.
_WORD = re.compile(
    r"(?:[^\W_]|[\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f"
    r"\u0900-\u0903\u093a-\u094f\u0951-\u0957\u0962\u0963\u0981-\u0983\u09bc-\u09d7"
    r"\u0e31\u0e34-\u0e3a\u0e47-\u0e4e\u3099\u309a])+"
)
# Scripts written without spaces: a run becomes overlapping character bigrams (as Lucene's CJK
# analyzer does), so a query word matches inside a longer run.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_LATIN_WITH_MARKS = range(0x00C0, 0x0250)


def _fold_table() -> dict[int, str]:
    """Latin letters with diacritics -> their base letters ("café" -> "cafe"). Other scripts
    are left alone: stripping marks there changes letters (й -> и), not accents."""
    table: dict[int, str] = {}
    for code in (*_LATIN_WITH_MARKS, *range(0x1E00, 0x1F00)):
        decomposed = unicodedata.normalize("NFKD", chr(code))
        base = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
        if base and base != chr(code) and base.isascii():
            table[code] = base
    return table


_FOLD = _fold_table()


def _cjk_bigrams(run: str) -> list[str]:
    return [run] if len(run) < 2 else [run[i : i + 2] for i in range(len(run) - 1)]


class Bm25Tokenizer:
    """Text -> index terms: NFKC, casefold, Latin accent folding, Unicode words, English
    stopwords out, Snowball English stems; numbers are kept as terms."""

    def __init__(self, stopwords: frozenset[str] = ENGLISH_STOPWORDS, *, stem: bool = True) -> None:
        self._stopwords = frozenset(w.replace("'", "") for w in stopwords)
        stemmer = snowballstemmer.stemmer("english")
        self._stem = lru_cache(maxsize=200_000)(stemmer.stemWord) if stem else None

    def tokenize(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text).casefold().translate(_FOLD)
        out: list[str] = []
        stop, stem = self._stopwords, self._stem
        for word in _WORD.findall(text.replace("'", "").replace("\u2019", "")):
            if len(word) > MAX_TOKEN_CHARS or word in stop:
                continue
            if _CJK.search(word):
                out.extend(_split_cjk(word))
            else:
                out.append(stem(word) if stem is not None else word)
        return out


def _split_cjk(word: str) -> list[str]:
    """A mixed run such as "iphone专卖店" -> "iphone", "专卖", "卖店"."""
    terms: list[str] = []
    run: list[str] = []
    other: list[str] = []
    for ch in word:
        if _CJK.match(ch):
            if other:
                terms.append("".join(other))
                other = []
            run.append(ch)
        else:
            if run:
                terms.extend(_cjk_bigrams("".join(run)))
                run = []
            other.append(ch)
    if run:
        terms.extend(_cjk_bigrams("".join(run)))
    if other:
        terms.append("".join(other))
    return terms


@lru_cache(maxsize=500_000)
def term_id(term: str) -> int:
    """Stable unsigned 32-bit id of a term."""
    return int.from_bytes(blake2b(term.encode("utf-8"), digest_size=4).digest(), "little")


class Bm25SparseEncoder:
    """`core.protocols.SparseEncoder` for BM25 with engine-side IDF.

    `avg_doc_len` is in tokens as `Bm25Tokenizer` counts them; it stands in for the corpus
    average the engine does not provide. A value near the real average matters only for
    length normalisation (b); see DEFAULT_AVG_DOC_LEN for how the default was chosen.
    """

    def __init__(
        self,
        k1: float = 1.2,
        b: float = 0.75,
        avg_doc_len: float = DEFAULT_AVG_DOC_LEN,
        tokenizer: Bm25Tokenizer | None = None,
    ) -> None:
        if k1 < 0:
            raise ValueError(f"k1 must be >= 0, got {k1}")
        if not 0.0 <= b <= 1.0:
            raise ValueError(f"b must be within [0, 1], got {b}")
        if avg_doc_len <= 0:
            raise ValueError(f"avg_doc_len must be > 0 tokens, got {avg_doc_len}")
        self.k1, self.b, self.avg_doc_len = k1, b, avg_doc_len
        self.tokenizer = tokenizer or Bm25Tokenizer()

    def _term_counts(self, tokens: list[str]) -> Counter[int]:
        counts: Counter[int] = Counter()
        for term, tf in Counter(tokens).items():
            counts[term_id(term)] += tf  # a hash collision merges two terms
        return counts

    def encode_document(self, text: str) -> SparseVector:
        tokens = self.tokenizer.tokenize(text)
        counts = self._term_counts(tokens)
        k1 = self.k1
        norm = k1 * (1.0 - self.b + self.b * len(tokens) / self.avg_doc_len)
        indices = sorted(counts)
        return SparseVector(
            indices=indices, values=[counts[i] * (k1 + 1.0) / (counts[i] + norm) for i in indices]
        )

    def encode_query(self, text: str) -> SparseVector:
        indices = sorted(self._term_counts(self.tokenizer.tokenize(text)))
        return SparseVector(indices=indices, values=[1.0] * len(indices))
