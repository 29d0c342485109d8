"""UnstructuredParser on real files of every supported format, built by tests/ingestion/files.py,
fully offline. What a user would notice: the text they wrote comes back, headings become
sections, pages and slides are numbered, and bad files fail with a clear reason."""

from __future__ import annotations

import io
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import EmptyDocument, ParseError, UnsupportedMediaType
from core.models import ParsedDocument
from core.protocols import DocumentParser
from ingestion.parsing import UnstructuredParser
from ingestion.parsing.formats import ZipLimits, detect_format
from tests.ingestion import files as F

pytestmark = pytest.mark.unit
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "docs"


@pytest.fixture(scope="module")
def parser() -> Iterator[UnstructuredParser]:
    """One warmed parser. Every network connection is refused and recorded: vendors swallow
    their own network errors, so the record, not an exception, is what the test checks."""
    real_connect = socket.socket.connect
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network disabled in tests")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    try:
        p = UnstructuredParser()
        p.warm_up()
        yield p
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
    assert attempts == [], f"the parser tried to reach the network: {attempts}"


def assert_located(doc: ParsedDocument) -> None:
    for e in doc.elements:
        assert doc.text[e.char_start:e.char_end] == e.text
    assert doc.text == "\n\n".join(e.text for e in doc.elements)


def element_with(doc: ParsedDocument, needle: str):  # type: ignore[no-untyped-def]
    return next(e for e in doc.elements if needle in e.text)


def test_is_a_document_parser() -> None:
    assert isinstance(UnstructuredParser(), DocumentParser)


def test_pdf_pages_are_numbered(parser: UnstructuredParser) -> None:
    doc = parser.parse(F.make_pdf(), "policy.pdf", "application/pdf")
    assert_located(doc)
    assert doc.detected_type == "pdf" and doc.has_pages
    assert element_with(doc, F.PDF_PAGE1).page == 1
    assert element_with(doc, F.PDF_PAGE2).page == 2


def test_docx_headings_become_sections(parser: UnstructuredParser) -> None:
    doc = parser.parse(F.make_docx(), "remote.docx", None)
    assert_located(doc)
    assert not doc.has_pages
    assert element_with(doc, F.DOCX_INTRO).section_path == ["Remote Work Policy"]
    assert element_with(doc, F.DOCX_DETAIL).section_path == ["Remote Work Policy", "Approval"]


def test_pptx_slides_are_pages(parser: UnstructuredParser) -> None:
    doc = parser.parse(F.make_pptx(), "review.pptx", None)
    assert_located(doc)
    assert doc.has_pages
    first, second = element_with(doc, F.PPTX_SLIDE1), element_with(doc, F.PPTX_SLIDE2)
    assert (first.page, first.section_path) == (1, ["Sales Review"])
    assert (second.page, second.section_path) == (2, ["Support Review"])


@pytest.mark.parametrize(("build", "name", "top", "sub", "para", "sub_para"), [
    (F.make_html, "leave.html", "Leave Policy", "Carry Over", F.HTML_PARA, F.HTML_SUB),
    (F.make_md, "readme.md", "Cairn Overview", "Citations", F.MD_PARA, F.MD_SUB),
])
def test_nested_headings(parser: UnstructuredParser, build, name, top, sub, para, sub_para) -> None:  # type: ignore[no-untyped-def]
    doc = parser.parse(build(), name, None)
    assert_located(doc)
    assert element_with(doc, para).section_path == [top]
    assert element_with(doc, sub_para).section_path == [top, sub]
    assert element_with(doc, para).category == "NarrativeText"


def test_plain_text(parser: UnstructuredParser) -> None:
    doc = parser.parse(F.make_txt(), "incident.txt", "text/plain")
    assert_located(doc)
    assert element_with(doc, F.TXT_PARA).category == "NarrativeText"


def test_email_keeps_subject_and_body(parser: UnstructuredParser) -> None:
    doc = parser.parse(F.make_eml(), "review.eml", "message/rfc822")
    assert_located(doc)
    assert doc.elements[0].text == F.EML_SUBJECT
    assert element_with(doc, F.EML_BODY).section_path == [F.EML_SUBJECT]


def test_csv_rows_stay_rows(parser: UnstructuredParser) -> None:
    doc = parser.parse(F.make_csv(), "owners.csv", "text/csv")
    assert doc.text.splitlines() == [" | ".join(row) for row in F.CSV_ROWS]
    assert doc.elements[0].category == "Table"


def test_xlsx_sheet_is_the_section(parser: UnstructuredParser) -> None:
    doc = parser.parse(F.make_xlsx(), "stock.xlsx", None)
    assert "Sprocket | 42" in doc.text.splitlines()
    assert doc.elements[0].section_path == [F.XLSX_SHEET]


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir()))
def test_shipped_fixtures_parse(parser: UnstructuredParser, name: str) -> None:
    doc = parser.parse((FIXTURES / name).read_bytes(), name, None)
    assert doc.detected_type == Path(name).suffix.lstrip(".") and len(doc.text) > 40


def test_content_wins_over_a_lying_name(parser: UnstructuredParser) -> None:
    doc = parser.parse(F.make_pdf(), "notes.txt", "text/plain")
    assert doc.detected_type == "pdf" and F.PDF_PAGE2 in doc.text
    assert parser.parse(F.make_html(), "page.txt", None).detected_type == "html"
    assert parser.parse(F.make_docx(), "upload.bin", "application/octet-stream").detected_type == "docx"
    assert parser.parse(F.make_eml(), "message", None).detected_type == "eml"


@pytest.mark.parametrize(("data", "name"), [
    (F.make_pdf()[:400], "cut.pdf"),
    (b"%PDF-1.7\n" + bytes(range(256)) * 20, "garbage.pdf"),
    (b"This is just text pretending to be a PDF.", "fake.pdf"),
    (F.make_docx()[:1500], "cut.docx"),
    (b"This is not a Word document at all.", "fake.docx"),
])
def test_damaged_files_fail_with_a_readable_reason(parser: UnstructuredParser, data: bytes,
                                                   name: str) -> None:
    damaged = r"could not parse the (PDF|Word document): the file is damaged"
    with pytest.raises(ParseError, match=damaged) as info:
        parser.parse(data, name, None)
    assert "Traceback" not in info.value.message and "Error" not in info.value.message


def test_docx_with_broken_xml_fails_cleanly(parser: UnstructuredParser) -> None:
    src = zipfile.ZipFile(io.BytesIO(F.make_docx()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for item in src.infolist():
            broken = item.filename == "word/document.xml"
            out.writestr(item, b"<w:document><oops" if broken else src.read(item))
    with pytest.raises(ParseError, match="could not parse the Word document"):
        parser.parse(buf.getvalue(), "broken.docx", None)


@pytest.mark.parametrize(("data", "name", "what"), [
    (F.PNG_BYTES, "diagram.png", "PNG image"),
    (F.PNG_BYTES, "diagram.pdf", "PNG image"),
    (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" * 8, "setup.exe", "executable"),
    (b"PK\x03\x04" + b"\x00" * 10, "bundle.zip", "ZIP"),
])
def test_unsupported_types_name_what_is_supported(parser: UnstructuredParser, data: bytes, name: str,
                                                   what: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=what) as info:
        parser.parse(data, name, None)
    assert "Supported formats: PDF, Word" in info.value.message


def test_plain_zip_is_unsupported() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(UnsupportedMediaType, match="not a Word, PowerPoint or Excel"):
        detect_format(buf.getvalue(), "notes.zip", "application/zip")


@pytest.mark.parametrize("data", [b"", b"   \n\t  \n"])
def test_empty_files(parser: UnstructuredParser, data: bytes) -> None:
    with pytest.raises(EmptyDocument):
        parser.parse(data, "empty.txt", None)


def test_encrypted_pdf_asks_for_an_unprotected_copy(parser: UnstructuredParser) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(F.make_pdf())))
    writer.encrypt(user_password="secret", algorithm="AES-256")
    buf = io.BytesIO()
    writer.write(buf)
    with pytest.raises(ParseError, match="password-protected"):
        parser.parse(buf.getvalue(), "locked.pdf", None)


def test_document_without_text_is_empty(parser: UnstructuredParser) -> None:
    with pytest.raises(EmptyDocument, match="no text could be extracted"):
        parser.parse(b"<html><body><p>   </p></body></html>", "blank.html", None)


def test_zip_bomb_docx_is_refused_before_unpacking(parser: UnstructuredParser) -> None:
    bomb = F.make_zip_bomb_docx()
    assert len(bomb) < 2 * 1024 * 1024
    with pytest.raises(ParseError, match="zip bomb") as info:
        parser.parse(bomb, "bomb.docx", None)
    assert info.value.details["reason"] == "zip_bomb"


def test_too_many_zip_members_is_refused() -> None:
    with pytest.raises(ParseError, match="more than the 5 allowed"):
        detect_format(F.make_docx(), "a.docx", None, ZipLimits(max_members=5))
