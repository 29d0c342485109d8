"""Decide what a file is from its bytes first, its name and declared type second.

Uploaders and connectors mislabel files all the time (a PDF saved as `.txt`, an HTML page served
as `text/plain`), so wherever the bytes are unambiguous (magic numbers, OOXML zip members, an HTML
document start) they win. Where they are not (plain text: Markdown, CSV, text, e-mail), the
declared type decides and sniffing only fills a gap. A file that claims a binary format its bytes
do not have is damaged, which is a parse failure, not an unsupported type.
"""

from __future__ import annotations

import io
import mimetypes
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

from core.errors import EmptyDocument, ParseError, UnsupportedMediaType

SUPPORTED = ("pdf", "docx", "pptx", "xlsx", "html", "md", "txt", "eml", "csv")
SUPPORTED_DESCRIPTION = ("PDF, Word (.docx), PowerPoint (.pptx), Excel (.xlsx), HTML, Markdown, plain text, "
                         "e-mail (.eml) and CSV")
BINARY_FORMATS = frozenset({"pdf", "docx", "pptx", "xlsx"})
FORMAT_NAMES = {"pdf": "PDF", "docx": "Word document", "pptx": "PowerPoint deck", "xlsx": "Excel workbook",
                "html": "HTML page", "md": "Markdown file", "txt": "text file", "eml": "e-mail",
                "csv": "CSV file"}

_EXTENSIONS = {
    ".pdf": "pdf", ".docx": "docx", ".pptx": "pptx", ".xlsx": "xlsx", ".html": "html", ".htm": "html",
    ".xhtml": "html", ".md": "md", ".markdown": "md", ".txt": "txt", ".text": "txt", ".log": "txt",
    ".eml": "eml", ".csv": "csv",
}
_CONTENT_TYPES = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html", "application/xhtml+xml": "html", "text/markdown": "md", "text/x-markdown": "md",
    "text/plain": "txt", "message/rfc822": "eml", "text/csv": "csv", "application/csv": "csv",
}
# Magic numbers of formats people commonly upload by mistake; named so the error says what it was.
_UNSUPPORTED_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"BM", "a BMP image"),
    (b"RIFF", "a RIFF media file"), (b"MZ", "a Windows executable"), (b"\x7fELF", "an ELF executable"),
    (b"\x1f\x8b", "a gzip archive"), (b"BZh", "a bzip2 archive"), (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"), (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office (OLE2) file"),
    (b"{\\rtf", "an RTF document"), (b"ID3", "an MP3 file"),
)
_OOXML_MAIN_PART = (("word/document.xml", "docx"), ("ppt/presentation.xml", "pptx"),
                    ("xl/workbook.xml", "xlsx"))
_HTML_START = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>])", re.I | re.S)
_HEADER_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):[ \t]?.*$")
_EMAIL_HEADERS = {"from", "to", "subject", "date", "message-id", "mime-version", "received", "cc"}


@dataclass(frozen=True)
class ZipLimits:
    """Bounds checked on the zip directory before any OOXML member is decompressed."""

    max_members: int = 10_000
    max_uncompressed_bytes: int = 256 * 1024 * 1024


def declared_format(filename: str, content_type: str | None) -> str | None:
    """What the caller says the file is: the extension if we know it, else the content type."""
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime in _CONTENT_TYPES:
        return _CONTENT_TYPES[mime]
    guessed, _ = mimetypes.guess_type(filename or "")
    return None if guessed is None else _CONTENT_TYPES.get(guessed)


def detect_format(data: bytes, filename: str, content_type: str | None,
                  limits: ZipLimits | None = None) -> str:
    """Return one of SUPPORTED or raise EmptyDocument / UnsupportedMediaType / ParseError."""
    if not data.strip():
        raise EmptyDocument(f"'{filename}' is empty; upload a file with some text in it")
    declared = declared_format(filename, content_type)
    head = data[:2048]
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return _ooxml_format(data, filename, declared, limits or ZipLimits())
    text_like = _looks_like_text(head)
    if not text_like or declared in BINARY_FORMATS:
        for magic, what in _UNSUPPORTED_MAGIC:
            if head.startswith(magic):
                raise _unsupported(filename, what)
        if declared in BINARY_FORMATS:
            raise _damaged(declared)
        if not text_like:
            raise _unsupported(filename, "a binary file of an unknown type")
    if _HTML_START.match(head):
        return "html"
    if declared is not None:
        return declared
    if content_type and not _is_generic_type(content_type):
        raise _unsupported(filename, f"declared as {content_type.split(';')[0].strip()}")
    return "eml" if looks_like_email(head) else "txt"


def _ooxml_format(data: bytes, filename: str, declared: str | None, limits: ZipLimits) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        if declared in BINARY_FORMATS:
            raise _damaged(declared or "docx") from exc
        raise _unsupported(filename, "a damaged ZIP archive") from exc
    names = {info.filename for info in infos}
    kind = next((k for part, k in _OOXML_MAIN_PART if part in names), None)
    if kind is None or "[Content_Types].xml" not in names:
        if declared in BINARY_FORMATS - {"pdf"}:
            raise _damaged(declared or "docx")
        raise _unsupported(filename, "a ZIP archive that is not a Word, PowerPoint or Excel file")
    what = FORMAT_NAMES[kind]
    if len(infos) > limits.max_members:
        raise ParseError(f"could not parse the {what}: it has {len(infos)} parts, more than the "
                         f"{limits.max_members} allowed; it may be a zip bomb", reason="zip_bomb")
    total = sum(info.file_size for info in infos)
    if total > limits.max_uncompressed_bytes:
        raise ParseError(
            f"could not parse the {what}: it unpacks to {total // (1024 * 1024)} MB, more than the "
            f"{limits.max_uncompressed_bytes // (1024 * 1024)} MB allowed; it may be a zip bomb",
            reason="zip_bomb")
    return kind


def _looks_like_text(head: bytes) -> bool:
    """UTF-16 with a BOM, or no NUL bytes and few control characters."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    if b"\x00" in head:
        return False
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls <= len(head) // 20


def looks_like_email(head: bytes) -> bool:
    """An RFC 822 header block: header lines up to the first blank line, with From plus one of
    Subject / Date / Message-ID / MIME-Version."""
    names: set[str] = set()
    for line in head.decode("utf-8", "replace").splitlines():
        if not line.strip():
            break
        if line[:1] in " \t":
            continue
        match = _HEADER_LINE.match(line)
        if match is None:
            return False
        names.add(match.group(1).lower())
    return "from" in names and len(names & _EMAIL_HEADERS) >= 2


def _is_generic_type(content_type: str) -> bool:
    mime = content_type.split(";")[0].strip().lower()
    return mime in ("", "application/octet-stream", "binary/octet-stream") or mime.startswith("text/")


def _unsupported(filename: str, what: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"'{filename}' is {what}, which Cairn cannot index. Supported formats: {SUPPORTED_DESCRIPTION}.",
        supported=list(SUPPORTED))


def _damaged(kind: str) -> ParseError:
    what = FORMAT_NAMES[kind]
    return ParseError(f"could not parse the {what}: the file is damaged or not a {what}", reason="damaged")
