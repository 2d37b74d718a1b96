"""Intake: walk a folder, read each supported file into one normalised Document, list the rest as Skipped."""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from extractor.errors import BadInput
from extractor.names import display_name, escape_controls, undecodable
from extractor.prepare.formats import decode_document, html_to_text, pdf_to_text

SUPPORTED = (".txt", ".md", ".html", ".htm", ".pdf", ".jsonl")
TITLE_MAX = 120

_BLANK_RUNS = re.compile(r"\n{4,}")  # more than two blank lines


@dataclass(frozen=True, slots=True)
class Document:
    doc_id: str
    path: str
    sha256: str
    text: str
    title: str
    encoding: str | None = None  # what the file's bytes were read as (None: PDF, JSONL)

    @property
    def chars(self) -> int:
        return len(self.text)


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str


def normalise_text(text: str) -> str:
    """BOM dropped, newlines unified, NFC, trailing whitespace per line trimmed, >2 blank lines collapsed."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if _has_trailing_space(text):
        text = "\n".join([line.rstrip() for line in text.split("\n")])
    return _BLANK_RUNS.sub("\n\n\n", text) if "\n\n\n\n" in text else text


def _has_trailing_space(text: str) -> bool:
    """Whether a line ends in whitespace: looks only before each newline (a regex over every character is 10x
    slower).
    """
    end = text.find("\n", 1)
    while end > 0:
        before = text[end - 1]
        if before != "\n" and before.isspace():
            return True
        end = text.find("\n", end + 1)
    return text[-1:].isspace() and text[-1:] != "\n"


def make_document(path: str, text: str, title: str | None = None, encoding: str | None = None) -> Document:
    """A Document over already-normalised text; the id is the first 16 hex of its sha256."""
    sha = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return Document(sha[:16], path, sha, text, _clip(title) if title else first_line(text), encoding)


def first_line(text: str) -> str:
    """The first non-empty line, markdown heading marks dropped, clipped to TITLE_MAX characters."""
    start = 0
    for _ in range(64):  # find, not split: splitting copies the whole text to read one line
        end = text.find("\n", start)
        line = (text[start:] if end < 0 else text[start:end]).strip().lstrip("#").strip()
        if line:
            return _clip(line)
        if end < 0:
            break
        start = end + 1
    return ""


def _clip(title: str) -> str:
    title = " ".join(title.split())
    return title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1] + "…"


def iter_documents(
    root: Path, *, max_chars: int | None = None, encoding: str | None = None
) -> Iterator[Document | Skipped]:
    """Every document under root in sorted path order; bad files come out as Skipped, never as errors.

    Paths are display names: a control character in a file name is escaped (`\\n`), so a path is always one
    line in messages, logs and JSON; a name that is not valid UTF-8 is skipped (it cannot be shown or stored).
    """
    root = Path(root)
    if not root.is_dir():
        raise BadInput(f"No such folder: {root} — pass a folder of .txt/.md/.html/.pdf/.jsonl documents")
    real_root = root.resolve()
    yield from _walk(root, "", real_root, {real_root}, max_chars, encoding)


def _walk(
    folder: Path, prefix: str, real_root: Path, visited: set[Path], max_chars: int | None, encoding: str | None = None
) -> Iterator[Document | Skipped]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield Skipped(prefix or ".", f"{prefix or '.'}: cannot read folder ({exc.strerror}) — check its permissions")
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue  # hidden files and folders (.git, .DS_Store) are never documents
        name = display_name(entry.name)
        rel = prefix + name
        if name != entry.name and undecodable(entry.name):
            yield Skipped(rel, f"{rel}: file name is not valid UTF-8 — rename it (e.g. with convmv) to read it")
            continue
        try:
            if entry.is_symlink():
                try:
                    target = Path(entry.path).resolve()
                except RuntimeError:  # Python 3.11-3.12 report a symlink loop this way
                    yield Skipped(rel, f"{rel}: symlink loop — remove the link or point it at a file")
                    continue
                if not target.exists():
                    yield Skipped(rel, f"{rel}: broken symlink — fix it or remove it")
                    continue
                if not target.is_relative_to(real_root):
                    yield Skipped(
                        rel, f"{rel}: symlink to a path outside the folder — not followed; copy the file in instead"
                    )
                    continue
                if target.is_dir():
                    if target in visited:
                        yield Skipped(
                            rel, f"{rel}: symlink to a folder already read — not followed (it would loop or repeat)"
                        )
                        continue
                    visited.add(target)
                    yield from _walk(Path(entry.path), rel + "/", real_root, visited, max_chars, encoding)
                    continue
            elif entry.is_dir():
                visited.add(Path(entry.path).resolve())
                yield from _walk(Path(entry.path), rel + "/", real_root, visited, max_chars, encoding)
                continue
            if not entry.is_file():
                yield Skipped(rel, f"{rel}: not a regular file — remove it from the folder")
                continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                yield Skipped(rel, f"{rel}: symlink loop — remove the link or point it at a file")
            else:
                yield Skipped(rel, f"{rel}: cannot read ({exc.strerror}) — check its permissions")
            continue
        dot = name.rfind(".")
        suffix = name[dot:].lower() if dot > 0 else ""
        if suffix == ".jsonl":
            yield from _read_jsonl(entry.path, rel, max_chars)
        else:
            yield _read_single(entry.path, rel, suffix, max_chars, encoding)


def read_file(
    path: str | Path, rel: str, *, max_chars: int | None = None, encoding: str | None = None
) -> Iterator[Document | Skipped]:
    """The document(s) in one file: one for .txt/.md/.html/.pdf, one per line for .jsonl."""
    suffix = os.path.splitext(rel)[1].lower()
    if suffix == ".jsonl":
        yield from _read_jsonl(path, rel, max_chars)
    else:
        yield _read_single(path, rel, suffix, max_chars, encoding)


def _read_single(
    path: str | Path, rel: str, suffix: str, max_chars: int | None, encoding: str | None = None
) -> Document | Skipped:
    """The one document in a .txt/.md/.html/.pdf file (a plain function: the walk calls it per file)."""
    if suffix not in SUPPORTED:
        kind = f"unsupported file type {suffix}" if suffix else "file without an extension"
        return Skipped(rel, f"{rel}: {kind} — convert it to .txt, .md, .html or .pdf, or remove it")
    try:
        data = read_bytes(path)
    except OSError as exc:
        return Skipped(rel, f"{rel}: cannot read ({exc.strerror}) — check its permissions")
    if not data:
        return Skipped(rel, f"{rel}: empty file — remove it or add text")
    title = None
    used: str | None = None
    if suffix == ".pdf":
        text, problem = pdf_to_text(data)
    else:
        text, problem, used = decode_document(data, encoding)
        if text is not None and suffix in (".html", ".htm"):
            text, title = html_to_text(text)
    if text is None:
        return Skipped(rel, f"{rel}: {problem}")
    return _checked(rel, normalise_text(text), title, max_chars, used)


def read_bytes(path: str | Path) -> bytes:
    """A whole file's bytes in as few system calls as possible (open, fstat, read, close)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)  # one byte more than fstat says, so a file that grew is noticed
        if len(data) == size:
            return data
        chunks = [data]
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _checked(
    rel: str, text: str, title: str | None, max_chars: int | None, encoding: str | None = None
) -> Document | Skipped:
    if not text or text.isspace():
        return Skipped(rel, f"{rel}: no text (only whitespace or markup) — remove it or add text")
    if max_chars is not None and len(text) > max_chars:
        return Skipped(
            rel,
            f"{rel}: {len(text)} chars exceeds the model context (max {max_chars}) — pass --split-long or split the "
            "file",
        )
    return make_document(rel, text, title, encoding)


def _read_jsonl(path: str | Path, rel: str, max_chars: int | None) -> Iterator[Document | Skipped]:
    seen: dict[str, int] = {}
    any_line = False
    try:
        fh = open(path, "rb")  # noqa: SIM115 - a file that cannot be opened is skipped with a reason, not raised
    except OSError as exc:
        yield Skipped(rel, f"{rel}: cannot read ({exc.strerror}) — check its permissions")
        return
    with fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            if not raw.strip():
                continue
            any_line = True
            where = f"{rel}:{number}"
            row, problem = _parse_line(raw)
            if row is None:
                yield Skipped(where, f"{where}: {problem}")
                continue
            doc_id, text, title = row
            if doc_id in seen:
                yield Skipped(
                    where,
                    f"{where}: duplicate id {doc_id!r} (first on line {seen[doc_id]}) — give every line its own id",
                )
                continue
            seen[doc_id] = number
            shown_id = escape_controls(doc_id)
            result = _checked(f"{rel}#{shown_id}", normalise_text(text), title, max_chars)
            if isinstance(result, Skipped):
                result = Skipped(where, result.reason.replace(f"{rel}#{shown_id}:", f"{where} (id {doc_id!r}):", 1))
            yield result
    if not any_line:
        yield Skipped(rel, f"{rel}: empty file — remove it or add one JSON object per line")


def _parse_line(raw: bytes) -> tuple[tuple[str, str, str | None] | None, str]:
    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if b"\x00" in raw:
            return None, "binary data, not a JSON line — remove the line"
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, "not UTF-8 text — re-save the file as UTF-8"
        return None, f"not valid JSON ({exc}) — fix the line or remove it"
    if not isinstance(row, dict):
        return None, 'not a JSON object — each line must be {"id": ..., "text": ...}'
    doc_id, text, title = row.get("id"), row.get("text"), row.get("title")
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or str(doc_id) == "":
        return None, 'missing "id" (a non-empty string or integer) — add one'
    if not isinstance(text, str):
        return None, 'missing "text" (a string) — add the document text'
    return (str(doc_id), text, title if isinstance(title, str) and title.strip() else None), ""


_SENTENCE_END = re.compile(r"""[.!?…]["'”’)\]]*\s+""")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")


def split_long(doc: Document, max_chars: int) -> list[Document]:
    """Cut a document into parts of at most max_chars, on paragraph breaks, else sentences, else lines, else words.

    Each part is a verbatim slice of doc.text (whitespace at the cuts dropped), so a span in a
    part is also a span in the parent at the part's offset.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    if len(doc.text) <= max_chars:
        return [doc]
    text = doc.text
    pieces: list[str] = []
    start = _skip_space(text, 0)
    while start < len(text):
        if len(text) - start <= max_chars:
            piece = text[start:].rstrip()
            if piece:
                pieces.append(piece)
            break
        cut = _find_cut(text, start, start + max_chars)
        piece = text[start:cut].rstrip()
        if piece:
            pieces.append(piece)
        start = _skip_space(text, cut)
    total = len(pieces)
    parts = []
    for number, piece in enumerate(pieces, start=1):
        sha = hashlib.sha256(piece.encode("utf-8")).hexdigest()
        parts.append(
            Document(
                f"{doc.doc_id}-p{number}",
                f"{doc.path}#part{number}",
                sha,
                piece,
                _clip(f"{doc.title} (part {number}/{total})"),
                doc.encoding,
            )
        )
    return parts


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _find_cut(text: str, start: int, limit: int) -> int:
    """The best end for a part that begins at start and may not reach past limit."""
    window = text[start : limit + 1]  # one more char: a break right at the limit still counts
    for pattern in (_PARAGRAPH_BREAK, _SENTENCE_END):
        best = -1
        for match in pattern.finditer(window):
            if match.start() > 0:
                end = match.start() if pattern is _PARAGRAPH_BREAK else match.start() + len(match.group().rstrip())
                if end <= limit - start:
                    best = end
        if best > 0:
            return start + best
    for sep in ("\n", " ", "\t"):
        at = window.rfind(sep, 1, limit - start + 1)
        if at > 0:
            return start + at
    return limit  # one unbroken run longer than max_chars: cut it hard
