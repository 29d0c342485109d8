"""An offline NLP backend for `unstructured`.

`unstructured` 0.27.32 classifies text (title vs narrative) with spaCy's `en_core_web_sm`, which
it downloads from GitHub on first use. Offline that download fails, and some partitioners (PDF
fast strategy) then silently return no elements. We point its private `_get_nlp` hook at a blank
English pipeline: a rule-based `sentencizer` plus a small verb tagger, because the only things
unstructured reads from the pipeline are sentence boundaries, word tokens and whether a POS tag
starts with ``VB`` (``contains_verb``). The pin in pyproject.toml exists because of this hook.

The vendor also pings a telemetry endpoint when it is imported unless opted out, so
`import_unstructured()` sets the documented opt-out variables before the first import.
"""

from __future__ import annotations

import os
import re
import threading
from types import ModuleType
from typing import Any

_lock = threading.Lock()
_nlp: Any = None
_COMPONENT = "cairn_verb_tagger"

# Opt-outs documented by unstructured (telemetry ping, usage banner). Setting them here, not in
# settings, because they must be in place before the vendor module is first imported anywhere.
_VENDOR_OPT_OUTS = {"SCARF_NO_ANALYTICS": "true", "DO_NOT_TRACK": "true", "UNSTRUCTURED_DISABLE_NOTICE": "1"}

_AUX_VERBS = {
    "is": "VBZ", "are": "VBP", "was": "VBD", "were": "VBD", "be": "VB", "been": "VBN", "being": "VBG",
    "am": "VBP", "has": "VBZ", "have": "VBP", "had": "VBD", "do": "VBP", "does": "VBZ", "did": "VBD",
    "can": "MD", "could": "MD", "will": "MD", "would": "MD", "shall": "MD", "should": "MD",
    "may": "MD", "might": "MD", "must": "MD", "'s": "VBZ", "'re": "VBP", "'m": "VBP", "'ve": "VBP",
    "get": "VB", "gets": "VBZ", "got": "VBD", "make": "VB", "makes": "VBZ", "made": "VBD",
    "go": "VB", "goes": "VBZ", "went": "VBD", "see": "VB", "sees": "VBZ", "saw": "VBD",
    "take": "VB", "takes": "VBZ", "took": "VBD", "give": "VB", "gives": "VBZ", "gave": "VBD",
    "use": "VB", "uses": "VBZ", "need": "VBP", "needs": "VBZ", "keep": "VB", "keeps": "VBZ",
    "run": "VB", "runs": "VBZ", "say": "VB", "says": "VBZ", "said": "VBD", "know": "VB",
    "knows": "VBZ", "knew": "VBD", "find": "VB", "finds": "VBZ", "found": "VBD", "come": "VB",
    "comes": "VBZ", "came": "VBD", "show": "VB", "shows": "VBZ", "let": "VB", "lets": "VBZ",
    "put": "VB", "puts": "VBZ", "set": "VB", "sets": "VBZ", "send": "VB", "sends": "VBZ",
    "sent": "VBD", "read": "VB", "reads": "VBZ", "write": "VB", "writes": "VBZ", "wrote": "VBD",
    "contain": "VB", "contains": "VBZ", "include": "VB", "includes": "VBZ", "describe": "VB",
    "describes": "VBZ", "store": "VB", "stores": "VBZ", "allow": "VB", "allows": "VBZ",
    "require": "VB", "requires": "VBZ", "provide": "VB", "provides": "VBZ", "explain": "VB",
    "explains": "VBZ", "support": "VB", "supports": "VBZ", "become": "VB", "becomes": "VBZ",
}
_AUX_VERBS.update(dict.fromkeys(
    "grew rose fell began brought bought built chose drew drove felt held kept led left lost meant met "
    "paid ran sold spoke spent stood taught told thought understood won".split(), "VBD"))
# Words after which the next word is very likely a verb ("they store", "to store").
_SUBJECTS = {"i", "you", "we", "they", "he", "she", "it", "who", "which", "that", "this", "these",
             "those", "there", "to", "not", "also", "then", "never", "always", "often"}
_MODALS = {"can", "could", "will", "would", "shall", "should", "may", "might", "must", "to", "please"}
_MIN_SENTENCE_WORDS = 5
_NOT_ED_VERBS = {"need", "bed", "red", "shed", "speed", "seed", "feed", "hundred", "sacred", "naked"}
_NOT_ING_VERBS = {"thing", "things", "king", "ring", "spring", "string", "nothing", "something",
                  "anything", "everything", "morning", "evening", "ceiling", "building", "meeting",
                  "during", "wing", "sibling", "pudding", "bring", "sing", "wedding", "clothing"}
_WORD = re.compile(r"^[a-z][a-z'-]*$")


def _tag_word(lower: str, prev: str) -> str:
    """A deliberately small rule set: good enough to say "this line has a verb", which is all
    unstructured asks of the tagger."""
    if lower in _AUX_VERBS:
        return _AUX_VERBS[lower]
    if not _WORD.match(lower):
        return "CD" if lower[:1].isdigit() else ("." if not lower[:1].isalnum() else "NN")
    if prev in _MODALS:
        return "VB"
    if len(lower) > 4 and lower.endswith("ing") and lower not in _NOT_ING_VERBS:
        return "VBG"
    if len(lower) > 3 and lower.endswith("ed") and lower not in _NOT_ED_VERBS:
        return "VBD"
    if prev in _SUBJECTS:
        return "VBZ" if lower.endswith("s") else "VBP"
    return "NN"


def _verb_tagger(doc: Any) -> Any:
    """Tag words by rule; then, since real sentences have verbs the rules miss ("Managers
    approve requests."), give one to any sentence of 5+ words that ends in . ! or ?"""
    prev = ""
    for token in doc:
        lower = token.text.lower()
        token.tag_ = _tag_word(lower, prev)
        prev = lower
    for sent in doc.sents:
        words = [t for t in sent if t.is_alpha]
        ends = sent[-1].text if sent[-1].is_punct else ""
        if (len(words) >= _MIN_SENTENCE_WORDS and ends in (".", "!", "?")
                and not any(t.tag_.startswith("VB") for t in sent)):
            words[1].tag_ = "VBP"
    return doc


def _build_pipeline() -> Any:
    import spacy
    from spacy.language import Language

    if not Language.has_factory(_COMPONENT):
        Language.component(_COMPONENT, func=_verb_tagger)
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe(_COMPONENT)
    return nlp


def _get_nlp() -> Any:
    return _nlp


def import_unstructured() -> ModuleType:
    """Import `unstructured` with the offline backend installed; safe to call from any thread,
    any number of times. Raises RuntimeError if the private hook is not where we expect it."""
    global _nlp
    with _lock:
        for name, value in _VENDOR_OPT_OUTS.items():
            os.environ.setdefault(name, value)
        import unstructured
        from unstructured.nlp import tokenize

        if _nlp is None:
            if not hasattr(tokenize, "_get_nlp") or not hasattr(tokenize, "_run_pipeline"):
                raise RuntimeError(
                    f"unstructured {unstructured.__version__} has no tokenize._get_nlp hook; "
                    "Cairn needs unstructured==0.27.32 (see pyproject.toml)"
                )
            _nlp = _build_pipeline()
        if tokenize._get_nlp is not _get_nlp:
            tokenize._get_nlp = _get_nlp  # type: ignore[assignment]  # the hook this module exists to set
            for cached in (tokenize._process_cached, tokenize.word_tokenize, tokenize.pos_tag,
                           tokenize._tokenize_for_cache):
                cached.cache_clear()
        return unstructured


def verify_offline_nlp() -> None:
    """Fail loudly at warm-up rather than let partitioners silently drop text later."""
    import_unstructured()
    from unstructured.partition.text_type import contains_verb, sentence_count

    if not contains_verb("The server stores every document.") or sentence_count("One. Two.") != 2:
        raise RuntimeError("the offline NLP backend for unstructured is not in effect")
