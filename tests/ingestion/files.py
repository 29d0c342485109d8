"""Builders for real documents of every supported format, written with the same libraries
people's office tools produce them with, so parser tests exercise genuine files.

Each builder returns the file's bytes; `write_all()` also puts them in a directory (used by the
timing script). The distinctive sentences are module constants so tests can look for them.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

PDF_PAGE1 = "The quarterly backup policy requires encrypted snapshots of every database."
PDF_PAGE2 = "Restores are rehearsed twice a year by the platform operations team."
DOCX_INTRO = "Employees may work remotely for up to three days each week."
DOCX_DETAIL = "Managers approve remote work requests within five business days."
PPTX_SLIDE1 = "Revenue grew by eighteen percent in the northern region."
PPTX_SLIDE2 = "The support team resolved most tickets within four hours."
HTML_PARA = "The vacation policy grants twenty five days of paid leave."
HTML_SUB = "Unused leave carries over until the end of March."
MD_PARA = "Cairn stores every document version with its access list."
MD_SUB = "Citations are verified against the stored chunk text."
TXT_PARA = "The incident review found that the certificate had expired on Sunday."
EML_SUBJECT = "Quarterly security review"
EML_BODY = "Please rotate the deployment keys before the audit on Friday."
CSV_ROWS = [["product", "region", "owner"], ["Lantern", "Oslo", "Ingrid"], ["Compass", "Lima", "Mateo"]]
XLSX_SHEET = "Inventory"
XLSX_ROWS = [["item", "count"], ["Sprocket", 42], ["Flywheel", 7]]


def make_pdf(pages: list[tuple[str, str]] | None = None) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for heading, body in pages or [("Backup Policy", PDF_PAGE1), ("Restore Drills", PDF_PAGE2)]:
        pdf.add_page()
        pdf.set_font("Helvetica", style="B", size=16)
        pdf.cell(text=heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(w=0, text=body)
    return bytes(pdf.output())


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Remote Work Policy", level=1)
    document.add_paragraph(DOCX_INTRO)
    document.add_heading("Approval", level=2)
    document.add_paragraph(DOCX_DETAIL)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def make_pptx() -> bytes:
    import pptx

    deck = pptx.Presentation()
    for title, body in [("Sales Review", PPTX_SLIDE1), ("Support Review", PPTX_SLIDE2)]:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    buf = io.BytesIO()
    deck.save(buf)
    return buf.getvalue()


def make_html() -> bytes:
    return (
        "<!DOCTYPE html><html><head><title>Leave</title></head><body>"
        f"<h1>Leave Policy</h1><p>{HTML_PARA}</p><h2>Carry Over</h2><p>{HTML_SUB}</p>"
        "</body></html>"
    ).encode()


def make_md() -> bytes:
    return f"# Cairn Overview\n\n{MD_PARA}\n\n## Citations\n\n{MD_SUB}\n".encode()


def make_txt() -> bytes:
    return f"Incident Review\n\n{TXT_PARA}\n\nThe team renewed it within an hour.\n".encode()


def make_eml() -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg["To"] = "ops@example.com"
    msg["Subject"] = EML_SUBJECT
    msg["Date"] = "Mon, 02 Mar 2026 09:00:00 +0000"
    msg["Message-ID"] = "<review-1@example.com>"
    msg.set_content(f"Hello team,\n\n{EML_BODY}\n\nThanks,\nAlice\n")
    return bytes(msg)


def make_csv() -> bytes:
    return "".join(",".join(row) + "\r\n" for row in CSV_ROWS).encode()


def make_xlsx() -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = XLSX_SHEET
    for row in XLSX_ROWS:
        sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def make_zip_bomb_docx(member_bytes: int = 300 * 1024 * 1024) -> bytes:
    """A real .docx with one extra member of zeros: ~300 KB on disk, 300 MB unpacked."""
    src = zipfile.ZipFile(io.BytesIO(make_docx()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            out.writestr(item, src.read(item))
        chunk = b"\0" * (1024 * 1024)
        with out.open("word/media/padding.bin", "w", force_zip64=True) as member:
            for _ in range(member_bytes // len(chunk)):
                member.write(chunk)
    return buf.getvalue()


PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f"
    b"\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00"
    b"IEND\xaeB`\x82"
)

BUILDERS: dict[str, Callable[[], bytes]] = {
    "sample.pdf": make_pdf,
    "sample.docx": make_docx,
    "sample.pptx": make_pptx,
    "sample.html": make_html,
    "sample.md": make_md,
    "sample.txt": make_txt,
    "sample.eml": make_eml,
    "sample.csv": make_csv,
    "sample.xlsx": make_xlsx,
}


def write_all(directory: Path) -> dict[str, Path]:
    """Write one file of every supported format into `directory`."""
    paths = {}
    for name, build in BUILDERS.items():
        path = directory / name
        path.write_bytes(build())
        paths[name] = path
    return paths
