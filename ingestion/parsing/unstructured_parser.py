"""`DocumentParser` on top of `unstructured`, fully offline.

The parser decides the format itself (`formats.detect_format`) and calls the one matching
partitioner, so a mislabelled file never reaches the wrong one and `unstructured`'s own detection
(libmagic, network-free but slow and lenient) is not involved. Vendor errors are translated here
into `ParseError` with a message a user can act on; the vendor exception is logged, never shown.

Choices a user can notice:
- PDFs use the "fast" strategy (pdfminer text layer). `hi_res` needs hub models; scanned PDFs
  without a text layer therefore raise `EmptyDocument` saying OCR is not available.
- A zip bomb dressed as an OOXML file raises `ParseError` (code `parse_failed`, detail
  `reason="zip_bomb"`) rather than `PayloadTooLarge`: the upload itself was small, it is the
  document that is unusable, and the `DocumentParser` contract names `ParseError`.
- Tables (CSV, XLSX, and tables inside DOCX/PPTX/HTML) become one line per row, cells joined by
  " | ", so rows survive chunking; XLSX tables carry their sheet name as section.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from core.errors import EmptyDocument, ParseError
from core.models import ParsedDocument, ParsedElement
from ingestion.parsing._offline_nlp import import_unstructured, verify_offline_nlp
from ingestion.parsing.formats import FORMAT_NAMES, ZipLimits, detect_format

logger = logging.getLogger(__name__)

PAGED_FORMATS = frozenset({"pdf", "pptx"})
_HEADING_FORMATS = frozenset({"pdf", "docx", "pptx", "html", "md", "txt"})
_SKIPPED_CATEGORIES = frozenset({"PageBreak"})
SEPARATOR = "\n\n"


class UnstructuredParser:
    """Parses PDF, DOCX, PPTX, XLSX, HTML, Markdown, text, e-mail and CSV into located elements.

    `zip_limits` bounds what an OOXML file may unpack to. Construction is cheap; `warm_up()` (or
    the first `parse`) imports unstructured and installs the offline NLP backend.
    """

    def __init__(self, *, zip_limits: ZipLimits | None = None) -> None:
        self._zip_limits = zip_limits or ZipLimits()

    def warm_up(self) -> None:
        """Install the NLP backend and import every partitioner (together ~3 s), so the first
        document of each format does not pay for it."""
        verify_offline_nlp()
        import importlib

        for module in ("pdf", "docx", "pptx", "xlsx", "csv", "html", "md", "text", "email"):
            importlib.import_module(f"unstructured.partition.{module}")

    def parse(self, data: bytes, filename: str, content_type: str | None = None) -> ParsedDocument:
        kind = detect_format(data, filename, content_type, self._zip_limits)
        import_unstructured()
        elements = _partition(kind, data)
        doc = build_document(elements, kind)
        if not doc.text.strip():
            hint = ""
            if kind == "pdf":
                _require_readable_pdf(data)
                hint = " (it may be a scanned PDF; OCR is not available)"
            raise EmptyDocument(f"no text could be extracted from '{filename}'{hint}")
        return doc


def _require_readable_pdf(data: bytes) -> None:
    """unstructured logs and swallows pdfminer failures, returning no elements; tell a damaged
    PDF apart from one that simply has no text layer."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        encrypted, pages = reader.is_encrypted, 0 if reader.is_encrypted else len(reader.pages)
    except Exception as exc:
        raise _parse_error("PDF", "damaged") from exc
    if encrypted:
        raise _parse_error("PDF", "encrypted")
    if pages == 0:
        raise _parse_error("PDF", "damaged")


def _partition(kind: str, data: bytes) -> list[Any]:
    what = FORMAT_NAMES[kind]
    try:
        return list(_PARTITIONERS[kind](data))
    except Exception as exc:
        logger.warning("unstructured failed on a %s", kind, exc_info=True)
        raise _parse_error(what, _reason_of(exc)) from exc


_MESSAGES = {
    "damaged": "could not parse the {what}: the file is damaged or not a {what}",
    "encrypted": "could not parse the {what}: it is password-protected; upload an unprotected copy",
    "too_many_pages": "could not parse the {what}: it has more pages than allowed",
}


def _parse_error(what: str, reason: str) -> ParseError:
    return ParseError(_MESSAGES[reason].format(what=what), reason=reason)


def _reason_of(exc: Exception) -> str:
    name = type(exc).__name__.lower()
    if "password" in name or "encrypt" in name:
        return "encrypted"
    return "too_many_pages" if "pagecountexceeded" in name else "damaged"


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252, never failing."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


_ENGLISH_MARKERS = frozenset(
    "the of and to in is that for it with as was on are be by this from or an at which not have has".split()
)


def languages_of(text: str) -> list[str]:
    """["eng"] when the text is plainly English, else ["auto"].

    unstructured otherwise runs langdetect over the whole text of every document, which was
    62% of parse time on SciFact abstracts; common English function words decide the usual
    case in microseconds, and anything else still gets real detection.
    """
    words = re.findall(r"[a-z']+", text[:3000].lower())
    if len(words) >= 8 and sum(w in _ENGLISH_MARKERS for w in words) / len(words) >= 0.12:
        return ["eng"]
    return ["auto"]


def _pdf(data: bytes) -> Sequence[Any]:
    from unstructured.partition.pdf import partition_pdf

    return partition_pdf(file=io.BytesIO(data), strategy="fast", languages=["eng"],
                         include_page_breaks=False, infer_table_structure=False)


def _docx(data: bytes) -> Sequence[Any]:
    from unstructured.partition.docx import partition_docx

    return partition_docx(file=io.BytesIO(data), include_page_breaks=False)


def _pptx(data: bytes) -> Sequence[Any]:
    from unstructured.partition.pptx import partition_pptx

    return partition_pptx(file=io.BytesIO(data), include_page_breaks=False, include_slide_notes=True)


def _xlsx(data: bytes) -> Sequence[Any]:
    from unstructured.partition.xlsx import partition_xlsx

    return partition_xlsx(file=io.BytesIO(data), include_header=True)


def _csv(data: bytes) -> Sequence[Any]:
    from unstructured.partition.csv import partition_csv

    text = decode_text(data)
    return partition_csv(file=io.BytesIO(text.encode()), include_header=True, languages=languages_of(text))


def _html(data: bytes) -> Sequence[Any]:
    from unstructured.partition.html import partition_html

    text = decode_text(data)
    return partition_html(text=text, languages=languages_of(text))


def _md(data: bytes) -> Sequence[Any]:
    from unstructured.partition.md import partition_md

    text = decode_text(data)
    return partition_md(text=text, languages=languages_of(text))


def _txt(data: bytes) -> Sequence[Any]:
    from unstructured.partition.text import partition_text

    text = decode_text(data)
    return partition_text(text=text, languages=languages_of(text))


def _eml(data: bytes) -> Sequence[Any]:
    from unstructured.partition.email import partition_email

    # Attachments would be auto-partitioned (images -> hi_res); they are not indexed.
    return partition_email(file=io.BytesIO(data), process_attachments=False)


_PARTITIONERS: dict[str, Callable[[bytes], Sequence[Any]]] = {
    "pdf": _pdf, "docx": _docx, "pptx": _pptx, "xlsx": _xlsx, "csv": _csv,
    "html": _html, "md": _md, "txt": _txt, "eml": _eml,
}


def build_document(elements: Sequence[Any], kind: str) -> ParsedDocument:
    """Join element texts with blank lines, recording each element's span, page and headings."""
    parts: list[str] = []
    located: list[ParsedElement] = []
    offset = 0
    headings: list[tuple[int, str]] = []
    for element in _with_email_subject(elements, kind):
        category = str(getattr(element, "category", "") or "UncategorizedText")
        meta = element.metadata
        text = (_table_rows(meta) or element.text or "") if category == "Table" else (element.text or "")
        text = text.strip()
        if not text or category in _SKIPPED_CATEGORIES:
            continue
        if category == "Title" and kind in _HEADING_FORMATS:
            depth = int(meta.category_depth or 0)
            while headings and headings[-1][0] >= depth:
                headings.pop()
            headings.append((depth, text))
        section = [title for _, title in headings]
        if kind == "xlsx" and meta.page_name:
            section = [str(meta.page_name)]
        elif kind == "eml":
            section = [str(meta.subject)] if getattr(meta, "subject", None) else []
        if parts:
            offset += len(SEPARATOR)
        page = meta.page_number if kind in PAGED_FORMATS else None
        located.append(ParsedElement(text=text, category=category, char_start=offset,
                                     char_end=offset + len(text), page=page, section_path=section))
        parts.append(text)
        offset += len(text)
    return ParsedDocument(text=SEPARATOR.join(parts), elements=located,
                          has_pages=kind in PAGED_FORMATS, detected_type=kind)


def _with_email_subject(elements: Sequence[Any], kind: str) -> Sequence[Any]:
    """unstructured keeps an e-mail's subject only in metadata; it is the most telling line."""
    if kind != "eml" or not elements:
        return elements
    subject = getattr(elements[0].metadata, "subject", None)
    if not subject:
        return elements
    from unstructured.documents.elements import ElementMetadata, Title

    return [Title(text=str(subject), metadata=ElementMetadata(subject=subject)), *elements]


def _table_rows(meta: Any) -> str:
    """Rows of `metadata.text_as_html` as lines of " | "-joined cells ("" if there is none)."""
    html = getattr(meta, "text_as_html", None)
    if not html:
        return ""
    import lxml.html

    try:
        tree = lxml.html.fragment_fromstring(html, create_parent="div")
    except Exception:
        return ""
    rows = []
    for row in tree.iter("tr"):
        cells = [" ".join(cell.text_content().split()) for cell in row if cell.tag in ("td", "th")]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)
