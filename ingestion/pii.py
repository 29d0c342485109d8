"""PII detection and redaction at ingest. Pure functions: no I/O, no keys.

Detectors favour precision: every number-shaped type is validated (Luhn for cards, mod-97 for
IBANs, SSA area/group/serial rules for US SSNs, the 11-proof for Dutch BSNs, `ipaddress` for IPs)
and shaped (separator layout, issuer prefix), so dates, years, ISBNs and order ids stay text.

Redaction rewrites a `ParsedDocument` before it is chunked: its text, each element's span and
the section headings that end up in chunk payloads. Offsets are remapped so every element (and
so every chunk and citation) is still an exact slice of the redacted text.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

from core.models import ParsedDocument, ParsedElement


class PiiType(StrEnum):
    email = "email"
    phone = "phone"
    card = "card"
    iban = "iban"
    ssn = "ssn"  # US social security number
    nino = "nino"  # UK national insurance number
    bsn = "bsn"  # Dutch citizen service number
    ip = "ip"  # IPv4 or IPv6 address


PiiAction = Literal["keep", "mask", "tokenize"]
PiiPolicy = Mapping[PiiType, PiiAction]
TOKEN = re.compile(r"\[PII:([A-Z]+):([0-9a-f]{8,64})\]")


@dataclass(frozen=True)
class Finding:
    type: PiiType
    start: int
    end: int
    value: str


def placeholder(kind: PiiType) -> str:
    return f"[{kind.value.upper()}]"


def token_text(kind: PiiType, digest: str) -> str:
    return f"[PII:{kind.value.upper()}:{digest}]"


# ---- validators -------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# country -> IBAN length (SEPA members and a few common others)
IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
    "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26,
    "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28,
    "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "VA": 22, "AE": 23, "SA": 24, "TR": 26,
}


def iban_valid(iban: str) -> bool:
    iban = iban.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """SSA rules: no area 000, 666 or 900-999, no group 00, no serial 0000."""
    a = int(area)
    return a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"


def bsn_valid(digits: str) -> bool:
    """The 11-proof: 9*d1 + 8*d2 + ... + 2*d8 - d9 is a multiple of 11 (and not zero)."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True)) - int(digits[8])
    return total % 11 == 0 and total != 0


_NINO_BAD_PREFIXES = {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}


# ---- detectors ---------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}(?![\w-])")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){10,30}")
_SSN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
_NINO = re.compile(
    r"(?<![A-Za-z0-9])([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?(\d{2}) ?(\d{2}) ?(\d{2}) ?([A-D])(?![A-Za-z0-9])"
)
_NINO_CONTEXT = re.compile(r"\b(?:nino|ni (?:number|no)|national insurance)\b", re.IGNORECASE)
_BSN = re.compile(r"(?<![\d.])(\d{4}\.\d{2}\.\d{3}|\d{3} \d{3} \d{3}|\d{9})(?![\d.])")
_BSN_CONTEXT = re.compile(r"\b(?:bsn|burgerservicenummer|sofi-?nummer|citizen service number)\b", re.IGNORECASE)
# international: + or 00, country code, then groups; national: a trunk 0 or a (area) code, or
# the North American 3-3-4 layout. Plain digit runs (ids, years) need a + to count.
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(0?\d{1,4}\))?(?:[ .-]?\d{1,5}){2,6}"
    r"|\(0?\d{2,5}\)[ .-]?\d{3,4}[ .-]?\d{3,4}"
    r"|0[1-9]\d{0,3}[ .-]\d{2,8}(?:[ .-]\d{2,4}){0,3}"
    r"|[2-9]\d{2}[ .-]\d{3}[ .-]\d{4}"
    r")(?![\w-]|\.\d)"
)
# "05.11.2024 10" (a date and an hour) has a phone number's digits but not its meaning; neither
# has an SSN-shaped number that failed the SSN rules
_DATE = re.compile(r"\d{1,2}([./-])\d{1,2}\1(?:19|20)\d{2}(?!\d)|(?:19|20)\d{2}([./-])\d{1,2}\2\d{1,2}(?!\d)")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
# dotted quads that are enzyme numbers or versions: "EC 1.14.16.2", "v1.2.3.4", "version 2.0.1.5"
_NOT_AN_IP = re.compile(r"(?:\bEC|\bv|\bversion|\bver\.?)\s?$", re.IGNORECASE)
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_CARD_LAYOUTS = {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4), (4, 4, 4, 1), (4, 4, 4, 2), (4, 4, 4, 3),
                 (4, 4, 5), (4, 4, 4, 4, 1), (4, 4, 4, 4, 2)}


def _emails(text: str) -> Iterable[Finding]:
    for m in _EMAIL.finditer(text):
        yield Finding(PiiType.email, m.start(), m.end(), m.group())


def _cards(text: str) -> Iterable[Finding]:
    for m in _CARD.finditer(text):
        parts = re.split(r"([ -])", m.group())  # digit groups with their separators between
        groups = parts[0::2]
        for k in range(len(groups), 0, -1):  # "4111 1111 1111 1111 12 units": drop trailing groups
            digits = "".join(groups[:k])
            if not 13 <= len(digits) <= 19:
                continue
            if k > 1 and tuple(len(g) for g in groups[:k]) not in _CARD_LAYOUTS:
                continue  # ISBNs, phone numbers, references: not laid out like a card
            if digits[0] in "23456" and luhn_valid(digits):
                end = m.start() + len("".join(parts[: 2 * k - 1]))
                yield Finding(PiiType.card, m.start(), end, text[m.start() : end])
                break


def _ibans(text: str) -> Iterable[Finding]:
    for m in _IBAN.finditer(text):
        length = IBAN_LENGTHS.get(m.group()[:2])
        if length is None:
            continue
        # take exactly the country's length of characters (the pattern may run into the next word)
        seen, end = 0, m.start()
        for i in range(m.start(), m.end()):
            if text[i] != " ":
                seen += 1
            if seen == length:
                end = i + 1
                break
        if seen == length and iban_valid(text[m.start() : end]) and not text[end : end + 1].isalnum():
            yield Finding(PiiType.iban, m.start(), end, text[m.start() : end])


def _ssns(text: str) -> Iterable[Finding]:
    for m in _SSN.finditer(text):
        if ssn_valid(m.group(1), m.group(3), m.group(4)):
            yield Finding(PiiType.ssn, m.start(), m.end(), m.group())


def _ninos(text: str) -> Iterable[Finding]:
    """Written compact ("AB123456C") a NINO looks like a product or compound code (SR141716A), so
    that form also needs its label in the 40 characters before it; the spaced form stands alone."""
    for m in _NINO.finditer(text):
        if m.group(1) in _NINO_BAD_PREFIXES:
            continue
        if " " in m.group() or _NINO_CONTEXT.search(text, max(0, m.start() - 40), m.start()):
            yield Finding(PiiType.nino, m.start(), m.end(), m.group())


def _bsns(text: str) -> Iterable[Finding]:
    """Nine digits pass the 11-proof by chance one time in eleven, so a BSN also needs its
    label (BSN, burgerservicenummer, sofinummer) in the 40 characters before it."""
    for m in _BSN.finditer(text):
        if bsn_valid(re.sub(r"\D", "", m.group())) and _BSN_CONTEXT.search(text, max(0, m.start() - 40), m.start()):
            yield Finding(PiiType.bsn, m.start(), m.end(), m.group())


def _phones(text: str) -> Iterable[Finding]:
    for m in _PHONE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 9 <= len(digits) <= 15 and not _DATE.match(m.group()) and not _SSN.fullmatch(m.group()):
            yield Finding(PiiType.phone, m.start(), m.end(), m.group())


def _ips(text: str) -> Iterable[Finding]:
    for pattern in (_IPV4, _IPV6):
        for m in pattern.finditer(text):
            if pattern is _IPV4 and _NOT_AN_IP.search(text, max(0, m.start() - 10), m.start()):
                continue
            try:
                ipaddress.ip_address(m.group())
            except ValueError:
                continue
            if m.group().count(":") >= 2 and sum(ch.isalnum() for ch in m.group()) < 2:
                continue  # "::" alone is punctuation, not an address
            yield Finding(PiiType.ip, m.start(), m.end(), m.group())


# most specific first: an overlap is resolved in favour of the earlier detector
_DETECTORS: tuple[Callable[[str], Iterable[Finding]], ...] = (
    _emails, _ibans, _cards, _ssns, _ninos, _bsns, _ips, _phones,
)


def detect(text: str) -> list[Finding]:
    """Non-overlapping findings in text order."""
    taken: list[Finding] = []
    for detector in _DETECTORS:
        for f in detector(text):
            if all(f.end <= t.start or f.start >= t.end for t in taken):
                taken.append(f)
    return sorted(taken, key=lambda f: f.start)


def normalize(kind: PiiType, value: str) -> str:
    """The canonical form a value is hashed in, so `Alice@Example.com` and `alice@example.com`
    (or `4111-1111-...` and `4111 1111 ...`) are one data subject's value."""
    if kind is PiiType.email:
        return value.strip().lower()
    if kind in (PiiType.iban, PiiType.nino):
        return re.sub(r"\s", "", value).upper()
    if kind is PiiType.ip:
        return str(ipaddress.ip_address(value.strip()))
    return re.sub(r"\D", "", value)


def subject_forms(subject: str) -> set[str]:
    """Canonical forms a data subject's value may have been stored under: as every PII type
    that matches the whole string, and as plain lower-cased text."""
    s = subject.strip()
    forms = {s.lower()}
    for f in detect(s):
        if f.start == 0 and f.end == len(s):
            forms.add(normalize(f.type, f.value))
    return forms


# ---- redaction ---------------------------------------------------------------------------------

Tokenizer = Callable[[Finding], str]


@dataclass(frozen=True)
class Edit:
    start: int  # in the original text
    end: int
    replacement: str


@dataclass(frozen=True)
class Redacted:
    document: ParsedDocument
    findings: list[Finding]  # every finding, whatever its action (for counts and hashes)
    counts: dict[str, int]
    title: str = ""  # the document title under the same policy (it is copied onto every chunk)


def redact_text(
    text: str, findings: Iterable[Finding], policy: PiiPolicy, tokenize: Tokenizer
) -> tuple[str, list[Edit]]:
    edits: list[Edit] = []
    for f in findings:
        action = policy.get(f.type, "keep")
        if action == "mask":
            edits.append(Edit(f.start, f.end, placeholder(f.type)))
        elif action == "tokenize":
            edits.append(Edit(f.start, f.end, tokenize(f)))
    parts: list[str] = []
    last = 0
    for e in edits:
        parts.append(text[last : e.start])
        parts.append(e.replacement)
        last = e.end
    parts.append(text[last:])
    return "".join(parts), edits


def map_offset(pos: int, edits: list[Edit], *, end: bool) -> int:
    """Where original offset `pos` lands in the redacted text. An offset inside a replaced
    span snaps to the replacement's start (or, for an end offset, its end)."""
    shift = 0
    for e in edits:
        if e.end <= pos:
            shift += len(e.replacement) - (e.end - e.start)
        elif e.start < pos:
            return e.start + shift + (len(e.replacement) if end else 0)
        else:
            break
    return pos + shift


def redact_document(doc: ParsedDocument, policy: PiiPolicy, tokenize: Tokenizer, title: str = "") -> Redacted:
    """The document and its title under the policy. Title findings count and are recorded like
    the body's (their offsets index the title, not the text)."""
    title_findings = detect(title) if title else []
    new_title = redact_text(title, title_findings, policy, tokenize)[0] if title_findings else title
    body = detect(doc.text)
    findings = [*body, *title_findings]
    counts = dict(Counter(f.type.value for f in findings))
    if all(policy.get(f.type, "keep") == "keep" for f in body) and not _headings_need_redaction(doc, policy):
        return Redacted(doc, findings, counts, new_title)
    text, edits = redact_text(doc.text, body, policy, tokenize)
    headings: dict[str, str] = {}

    def heading(h: str) -> str:
        if h not in headings:
            headings[h] = redact_text(h, detect(h), policy, tokenize)[0]
        return headings[h]

    elements = []
    for el in doc.elements:
        start, stop = map_offset(el.char_start, edits, end=False), map_offset(el.char_end, edits, end=True)
        elements.append(
            ParsedElement(
                text=text[start:stop], category=el.category, char_start=start, char_end=stop, page=el.page,
                section_path=[heading(h) for h in el.section_path],
            )
        )
    redacted = doc.model_copy(update={"text": text, "elements": elements})
    return Redacted(redacted, findings, counts, new_title)


def _headings_need_redaction(doc: ParsedDocument, policy: PiiPolicy) -> bool:
    headings = {h for el in doc.elements for h in el.section_path}
    return any(policy.get(f.type, "keep") != "keep" for h in headings for f in detect(h))


class PiiRedactor(Protocol):
    """Applies a tenant's PII policy to a parsed document before it is chunked (implemented in
    app/, where the policy and the token vault live)."""

    def redact(
        self, tenant_id: str, doc_id: str, version: int, doc: ParsedDocument, title: str = ""
    ) -> Redacted: ...
