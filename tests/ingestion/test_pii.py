"""PII detectors (validated, with false-positive guards) and offset-preserving redaction."""

from __future__ import annotations

import pytest

from core.models import ParsedDocument, ParsedElement
from ingestion.pii import (
    Finding,
    PiiType,
    bsn_valid,
    detect,
    iban_valid,
    luhn_valid,
    map_offset,
    normalize,
    redact_document,
    subject_forms,
    token_text,
)

pytestmark = pytest.mark.unit


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type.value, f.value) for f in detect(text)]


# ---- detectors -------------------------------------------------------------------------------


def test_emails() -> None:
    assert found("Write to Alice.Smith+hr@mail.example.co.uk today.") == [
        ("email", "Alice.Smith+hr@mail.example.co.uk")
    ]
    assert found("no address: alice@ or @example.com or alice@localhost") == []


@pytest.mark.parametrize(
    "phone",
    ["+31 6 1234 5678", "+44 20 7946 0958", "+1 (415) 555-2671", "+14155552671", "0044 20 7946 0958",
     "020 7946 0958", "06-12345678", "(555) 123-4567", "555-123-4567", "555.123.4567", "06 12 34 56 78"],
)
def test_phone_formats(phone: str) -> None:
    assert found(f"Call {phone} after nine.") == [("phone", phone)]


@pytest.mark.parametrize(
    "text",
    ["In 2024 revenue grew.", "Order 123456789 shipped.", "Dated 2024-01-15 and 15/01/2024.",
     "Meeting 05.11.2024 10:30 in room 4.", "Reference 20240115-0042.", "Version 3.14.159 released.",
     "Between 1999-2004 the ratio was 12:30.", "Invoice no. 4711 0815 from 1.1.2020.",
     "A total of 576 900 (330 000-701 200) years of life."],
)
def test_years_ids_and_dates_are_not_phones(text: str) -> None:
    assert found(text) == []


def test_cards_need_luhn_an_issuer_prefix_and_a_card_layout() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    text = (
        "Visa 4111 1111 1111 1111, Amex 3782-822463-10005, plain 5555555555554444; "
        "bad 4111 1111 1111 1112; ISBN 978-3-16-148410-0 and 9783161484100; "
        "odd grouping 41 1111 1111 1111 11."
    )
    assert found(text) == [
        ("card", "4111 1111 1111 1111"), ("card", "3782-822463-10005"), ("card", "5555555555554444")
    ]


def test_card_followed_by_another_number_keeps_its_own_digits() -> None:
    assert found("Card 4111 1111 1111 1111 12 units") == [("card", "4111 1111 1111 1111")]


def test_ibans_are_checked_with_mod_97_and_country_length() -> None:
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 33")
    text = "Pay NL91 ABNA 0417 1643 00 or DE89370400440532013000 THANKS, not NL91ABNA0417164301."
    assert found(text) == [("iban", "NL91 ABNA 0417 1643 00"), ("iban", "DE89370400440532013000")]


def test_us_ssn_area_group_and_serial_rules() -> None:
    text = "SSN 123-45-6789; invalid: 000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567, 123-45-0000."
    assert found(text) == [("ssn", "123-45-6789")]


def test_uk_nino_pattern_and_excluded_prefixes() -> None:
    assert found("NI number AB 12 34 56 C, also CE123456D.") == [
        ("nino", "AB 12 34 56 C"), ("nino", "CE123456D")
    ]
    assert found("Not: QQ 12 34 56 C, GB 12 34 56 A, AB 12 34 56 E, DA 12 34 56 A.") == []
    assert found("The antagonist SR141716A reduced intake.") == []  # compact form needs a label


def test_dutch_bsn_needs_the_eleven_proof_and_its_label() -> None:
    assert bsn_valid("111222333") and not bsn_valid("111222334")
    assert found("BSN: 111222333") == [("bsn", "111222333")]
    assert found("burgerservicenummer 1112.22.333") == [("bsn", "1112.22.333")]
    assert found("BSN: 111222334") == []  # fails the 11-proof
    assert found("Parcel tracking code 111222333 arrives Monday.") == []  # no label: an id


def test_ip_addresses() -> None:
    text = "Hosts 192.168.1.20, 2001:db8::1 and fe80::1; not 256.1.1.1, 1.2.3, 10:30:45, std::vector."
    assert found(text) == [("ip", "192.168.1.20"), ("ip", "2001:db8::1"), ("ip", "fe80::1")]
    assert found("tyrosine hydroxylase (TH, EC 1.14.16.2) and release v1.2.3.4") == []


def test_overlaps_resolve_to_one_finding() -> None:
    assert [f.type for f in detect("SSN 078-05-1120.")] == [PiiType.ssn]  # not also a phone
    assert [f.type for f in detect("mail bob@10.0.0.1.example.com")] == [PiiType.email]


def test_normalized_forms_make_one_subject() -> None:
    assert normalize(PiiType.email, "Alice@Example.COM") == "alice@example.com"
    assert normalize(PiiType.card, "4111-1111-1111-1111") == normalize(PiiType.card, "4111 1111 1111 1111")
    assert normalize(PiiType.iban, "nl91 abna 0417 1643 00") == "NL91ABNA0417164300"
    assert normalize(PiiType.ip, "2001:DB8:0:0::1") == "2001:db8::1"
    assert subject_forms(" Alice@Example.com ") == {"alice@example.com"}
    assert subject_forms("+31 6 1234 5678") == {"+31 6 1234 5678", "31612345678"}


# ---- redaction -------------------------------------------------------------------------------


def document(*texts: str, heading: str | None = None) -> ParsedDocument:
    elements, offset = [], 0
    for t in texts:
        elements.append(ParsedElement(text=t, category="NarrativeText", char_start=offset,
                                      char_end=offset + len(t), section_path=[heading] if heading else []))
        offset += len(t) + 2
    return ParsedDocument(text="\n\n".join(texts), elements=elements)


def fake_token(f: Finding) -> str:
    return token_text(f.type, f.value.encode().hex()[:8])


def test_mask_and_tokenize_keep_every_element_an_exact_slice() -> None:
    doc = document(
        "Contact alice@example.com or +31 6 1234 5678.",
        "Card 4111 1111 1111 1111 is on file.",
        "Nothing here.",
        heading="Support for bob@example.com",
    )
    out = redact_document(doc, {PiiType.email: "tokenize", PiiType.card: "mask"}, fake_token)
    text = out.document.text
    assert "alice@example.com" not in text and "4111" not in text
    assert "+31 6 1234 5678" in text  # phone: keep (not in the policy)
    assert "Card [CARD] is on file." in text
    assert f"Contact {token_text(PiiType.email, '616c6963')} or" in text
    for el in out.document.elements:
        assert text[el.char_start : el.char_end] == el.text
        assert el.section_path == [f"Support for {token_text(PiiType.email, '626f6240')}"]
    assert out.document.elements[2].text == "Nothing here."
    assert out.counts == {"email": 1, "phone": 1, "card": 1}


def test_keep_policy_returns_the_document_unchanged_with_counts() -> None:
    doc = document("Mail alice@example.com, IBAN NL91 ABNA 0417 1643 00.")
    out = redact_document(doc, {}, fake_token)
    assert out.document == doc
    assert out.counts == {"email": 1, "iban": 1}


def test_map_offset_snaps_into_replacements() -> None:
    from ingestion.pii import Edit

    edits = [Edit(5, 10, "[X]"), Edit(20, 22, "[LONGER]")]
    assert map_offset(3, edits, end=False) == 3
    assert map_offset(7, edits, end=False) == 5 and map_offset(7, edits, end=True) == 8
    assert map_offset(10, edits, end=False) == 8
    assert map_offset(25, edits, end=False) == 25 - 2 + 6
