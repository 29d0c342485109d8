from __future__ import annotations

import pytest

from orchestration._text import sentence_spans, terms

pytestmark = pytest.mark.unit


def test_sentences_keep_abbreviations_and_offsets() -> None:
    text = "Dr. Smith arrived at 5 p.m. on Monday! Was it U.S. policy? Yes.\n# Heading\nNext line."
    got = [text[s:e] for s, e in sentence_spans(text)]
    assert got == [
        "Dr. Smith arrived at 5 p.m. on Monday!",
        "Was it U.S. policy?",
        "Yes.",
        "# Heading",
        "Next line.",
    ]


def test_terms_stem_and_drop_stopwords() -> None:
    assert terms("How many points did the Panthers defense surrender?") == [
        "point",
        "panther",
        "defens",
        "surrend",
    ]
