"""File formats to text: bytes sniffed and decoded, HTML through a real parser, PDF through its text layer."""

from __future__ import annotations

import codecs
import io
import logging
import re
from html.parser import HTMLParser

import pypdf

# Bytes that never occur in text: C0 controls other than \t \n \f \r and ESC, plus DEL.
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27)) + b"\x7f"
_SNIFF = 1024  # binary formats show themselves in their first kilobyte (headers, tables, padding)


def decode_text(data: bytes) -> tuple[str | None, str]:
    """(text, "") for UTF-8 / UTF-8-BOM / UTF-16-BOM bytes, else (None, the problem and its fix)."""
    if data.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8"
        if b"\x00" in data or _mostly_control(data):
            return None, "binary file (not text) — remove it or convert it to .txt"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None, "not UTF-8 text — re-save it as UTF-8"
    # NUL was ruled out on the bytes for plain UTF-8; after a BOM it is checked here (e.g. UTF-32 read as UTF-16).
    if encoding != "utf-8" and "\x00" in text:
        return None, "binary file (not text) — remove it or convert it to .txt"
    return text, ""


def _mostly_control(data: bytes) -> bool:
    sample = data[:_SNIFF]
    controls = len(sample) - len(sample.translate(None, _CONTROL))
    return controls * 10 > len(sample)


# Elements whose content is never document text.
_DROPPED_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "math", "canvas", "iframe", "object"})
# Elements that start a new paragraph (blank line) or a new line.
_PARAGRAPH_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "dl", "section", "article",
     "header", "footer", "main", "nav", "aside", "figure", "address", "hr", "form", "fieldset", "details", "body"}
)
_LINE_TAGS = frozenset({"br", "div", "li", "dt", "dd", "tr", "figcaption", "caption", "summary", "legend", "option"})
_CELL_TAGS = frozenset({"td", "th"})
_SPACE_RUN = re.compile(r"\s+")


class _HtmlText(HTMLParser):
    """Visible text of an HTML page: dropped elements skipped, blocks on their own lines, entities unescaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.title: list[str] = []
        self._dropped: list[str] = []  # open dropped elements, innermost last
        self._in_title = False
        self._pre = 0
        self._newlines = 2  # the start of the text counts as a paragraph break

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _DROPPED_TAGS:
            self._dropped.append(tag)
        elif not self._dropped:
            self._break(tag)
            if tag == "pre":
                self._pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _DROPPED_TAGS:
            if tag in self._dropped:  # close it and anything left open inside it
                del self._dropped[len(self._dropped) - 1 - self._dropped[::-1].index(tag):]
        elif not self._dropped:
            if tag == "pre" and self._pre:
                self._pre -= 1
            if tag != "br":
                self._break(tag)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
            return
        if self._dropped:
            return
        if not self._pre:
            data = _SPACE_RUN.sub(" ", data)
            if self._newlines or (self.out and self.out[-1].endswith(" ")):
                data = data.lstrip(" ")
        if data:
            self.out.append(data)
            stripped = data.rstrip("\n")
            self._newlines = len(data) - len(stripped) if stripped else self._newlines + len(data)

    def _break(self, tag: str) -> None:
        if tag in _PARAGRAPH_TAGS:
            self._newline(2)
        elif tag in _LINE_TAGS:
            self._newline(1)
        elif tag in _CELL_TAGS and self.out and not self._newlines and not self.out[-1].endswith(" "):
            self.out.append(" ")

    def _newline(self, count: int) -> None:
        if self._newlines < count:
            self.out.append("\n" * (count - self._newlines))
            self._newlines = count


def html_to_text(markup: str) -> tuple[str, str | None]:
    """(visible text, <title> or None) of an HTML document."""
    parser = _HtmlText()
    parser.feed(markup)
    parser.close()
    title = " ".join("".join(parser.title).split())
    return "".join(parser.out).strip("\n") + "\n", title or None


logging.getLogger("pypdf").setLevel(logging.ERROR)  # malformed-but-readable PDFs warn on every page


def pdf_to_text(data: bytes) -> tuple[str | None, str]:
    """(text layer of every page, "") or (None, the problem and its fix)."""
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            return None, "encrypted PDF — remove the password (print or export it unprotected) and add it again"
        pages = [page.extract_text() or "" for page in reader.pages]
    except pypdf.errors.FileNotDecryptedError:
        return None, "encrypted PDF — remove the password (print or export it unprotected) and add it again"
    except Exception as exc:  # pypdf raises many types on damaged files; any of them means "unreadable"
        return None, f"not a readable PDF ({type(exc).__name__}: {exc}) — re-export it from its source"
    text = "\n\n".join(page.strip("\n") for page in pages)
    if not text.strip():
        return None, "scanned PDF with no text layer — OCR it first (e.g. ocrmypdf) and add the result"
    return text, ""
