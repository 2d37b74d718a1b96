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
_DETECT_BYTES = 256 * 1024  # charset detection reads this much: enough to decide, bounded for huge files
_SNIFF = 1024  # binary formats show themselves in their first kilobyte (headers, tables, padding)


def decode_text(data: bytes, encoding: str | None = None) -> tuple[str | None, str]:
    """(text, "") for text bytes in any encoding decode_document finds, else (None, the problem and its fix)."""
    text, problem, _ = decode_document(data, encoding)
    return text, problem


def decode_document(data: bytes, encoding: str | None = None) -> tuple[str | None, str, str | None]:
    """(text, "", encoding) or (None, problem, None).

    UTF-8 and BOM-marked UTF-8/16 are read as such; anything else (Latin-1, cp1252, KOI8-R, Shift-JIS,
    UTF-16 without a BOM …) is detected by charset-normalizer. `encoding` forces one (the --encoding option).
    """
    if encoding:
        try:
            text = data.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            return None, f"not {encoding} text ({exc.__class__.__name__}) — pass the file's real --encoding", None
        return _checked_text(text, encoding)
    if data.startswith(codecs.BOM_UTF8):
        return _checked_text(data.decode("utf-8-sig", "replace"), "utf-8-sig")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return _checked_text(data.decode("utf-16"), "utf-16")
        except UnicodeDecodeError:
            return None, "not UTF-16 text despite its byte-order mark — re-save it as UTF-8", None
    binary = b"\x00" in data or _mostly_control(data)
    if not binary:
        try:
            return data.decode("utf-8"), "", "utf-8"
        except UnicodeDecodeError:
            pass
    detected = detect_encoding(data)
    # NULs and control bytes mean binary, unless the bytes are UTF-16/32 without a BOM (ASCII text in
    # UTF-16 is half NULs); any single-byte code page would "read" a binary file, so none is trusted here.
    if binary and (
        detected is None
        or not detected.startswith(("utf_16", "utf_32"))
        or not _plausible_wide_text(data.decode(detected, "replace"))
    ):
        return None, "binary file (not text) — remove it or convert it to .txt", None
    if detected is None:
        return None, "text in an unknown encoding — re-save it as UTF-8 or pass --encoding", None
    text = data.decode(detected, "replace")
    if _mostly_control(text.encode("utf-8", "replace")):
        return None, "binary file (not text) — remove it or convert it to .txt", None
    return _checked_text(text, detected)


def _plausible_wide_text(text: str) -> bool:
    """UTF-16/32 read from bytes with NULs: real text has no C0 controls and is mostly Latin (that is where
    its NUL bytes come from); binary junk read this way is a scatter of unrelated scripts."""
    if not text or any(c < " " and c not in "\t\n\r\f" for c in text):
        return False
    return sum(c < "\u0100" for c in text) * 2 >= len(text)


def _checked_text(text: str, encoding: str) -> tuple[str | None, str, str | None]:
    # NUL never occurs in text: a file that decodes to it is binary read as text (e.g. UTF-32 read as UTF-16).
    if "\x00" in text:
        return None, "binary file (not text) — remove it or convert it to .txt", None
    return text, "", encoding


def detect_encoding(data: bytes) -> str | None:
    """charset-normalizer's pick for bytes that are not UTF-8, or None when nothing reads them as text.

    Short Western texts often fit several code pages equally well; like WHATWG (which reads Latin-1 as
    windows-1252) we take cp1252 when it reads the bytes at least as coherently as the best pick.
    """
    import charset_normalizer

    matches = charset_normalizer.from_bytes(data[:_DETECT_BYTES])
    best = matches.best()
    if best is None:
        return None
    for match in matches:
        if (
            "cp1252" in match.could_be_from_charset
            and match.percent_coherence >= best.percent_coherence
            and match.percent_chaos <= best.percent_chaos + 10
        ):
            return "cp1252"
    return best.encoding


def _mostly_control(data: bytes) -> bool:
    sample = data[:_SNIFF]
    controls = len(sample) - len(sample.translate(None, _CONTROL))
    return controls * 10 > len(sample)


# Elements whose content is never document text.
_DROPPED_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "math", "canvas", "iframe", "object"})
# Elements that start a new paragraph (blank line) or a new line.
_PARAGRAPH_TAGS = frozenset(
    {
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "pre",
        "table",
        "ul",
        "ol",
        "dl",
        "section",
        "article",
        "header",
        "footer",
        "main",
        "nav",
        "aside",
        "figure",
        "address",
        "hr",
        "form",
        "fieldset",
        "details",
        "body",
    }
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
                del self._dropped[len(self._dropped) - 1 - self._dropped[::-1].index(tag) :]
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
