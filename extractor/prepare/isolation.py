"""The isolation audit: every request line is the job's template with exactly one of its documents in it, nothing else.

It streams: per-line checks need one line at a time, and the check for a document held whole
inside another line keeps a fingerprint per document (a hash of 64 bytes, an offset, a length)
and an Aho-Corasick automaton over short patterns, never the texts.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ahocorasick_rs
import orjson

from extractor.errors import BadInput
from extractor.jobs import Job
from extractor.prepare.requests import DOCUMENT_SLOT, RequestTemplate, message_field

# A document B is found inside a text A through 64 bytes (UTF-8) of B that start at a newline near
# B's middle (the middle, because shared boilerplate sits at the start and the end): A holds B whole
# only if it holds those bytes, and an automaton whose patterns all begin with a newline only looks
# at A's newlines, which makes the scan nearly free. A document with no such newline is
# fingerprinted at its start instead (a full scan, still linear). A hit is checked against a hash
# of B's last 64 bytes, then confirmed against the manifest's sha256, so a collision costs time,
# never a false report. Documents shorter than FINGERPRINT_BYTES are not looked for.
FINGERPRINT_BYTES = 64
PATTERN_BYTES = 16
# Documents sharing one fingerprint beyond this many are not looked for (and are counted in a
# warning): each would cost a check on every hit, which boilerplate-heavy corpora make quadratic.
MAX_SHARED = 16
MAX_REPORTED = 1000  # a wholly broken job would otherwise list a problem per line
_READ_BUFFER = 1 << 20


@dataclass
class AuditReport:
    lines: int = 0
    documents: int = 0
    problems: list[str] = field(default_factory=list)  # isolation violations: submission must stop
    warnings: list[str] = field(default_factory=list)  # an input document holding another whole: reported, not blocking
    unreported: int = 0  # problems beyond MAX_REPORTED

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, message: str) -> None:
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(message)
        else:
            self.unreported += 1

    def warning(self, message: str) -> None:
        if len(self.warnings) < MAX_REPORTED:
            self.warnings.append(message)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "documents": self.documents,
            "ok": self.ok,
            "problems": self.problems,
            "unreported_problems": self.unreported,
            "warnings": self.warnings,
        }


class NestingIndex:
    """Finds, in any text, the documents it holds whole: a fingerprint per document, hits confirmed by sha256."""

    def __init__(self, documents: Sequence[Mapping[str, Any]]):
        self.documents = documents
        self.unchecked = 0  # documents not indexed because too many others share their fingerprint
        self._fingerprints: dict[int, int | tuple[int, ...]] = {}
        # Per document, by index: where its fingerprint starts and its length, in bytes, and a hash of its end.
        self._offset, self._size, self._tail = array("i"), array("i"), array("q")
        self._patterns: tuple[set[bytes], set[bytes]] = (set(), set())  # newline-anchored, start-anchored
        self._automata: list[ahocorasick_rs.BytesAhoCorasick] = []

    def add(self, data: bytes, index: int) -> None:
        """Index documents[index], given its text as UTF-8."""
        size = len(data)
        if size < FINGERPRINT_BYTES:
            return
        last = size - FINGERPRINT_BYTES  # the last offset with a whole fingerprint after it
        offset = data.find(b"\n", min(size // 2, last), last + 1)
        if offset < 0:
            offset = data.rfind(b"\n", 0, min(size // 2, last))
        anchored = offset >= 0
        offset = max(offset, 0)
        key = hash(data[offset : offset + FINGERPRINT_BYTES])
        known = self._fingerprints.get(key)
        if isinstance(known, tuple) and len(known) >= MAX_SHARED:
            self.unchecked += 1
            return
        self._fingerprints[key] = (
            index if known is None else (*(known if isinstance(known, tuple) else (known,)), index)
        )
        if index >= len(self._offset):  # prepare adds in order (one append); the audit's first pass in any order
            grow = index + 1 - len(self._offset)
            self._offset.extend(array("i", [0]) * grow)
            self._size.extend(array("i", [0]) * grow)
            self._tail.extend(array("q", [0]) * grow)
        self._offset[index], self._size[index], self._tail[index] = offset, size, hash(data[-FINGERPRINT_BYTES:])
        self._patterns[0 if anchored else 1].add(data[offset : offset + PATTERN_BYTES])

    def finish(self) -> None:
        """Build the automata; call once, after the last add and before the first held_in."""
        self._automata = [ahocorasick_rs.BytesAhoCorasick(sorted(p)) for p in self._patterns if p]
        self._patterns = (set(), set())

    def held_in(self, data: bytes, own: int | None) -> list[int]:
        """Indexes of the documents (other than own) whose whole text occurs in data (UTF-8)."""
        found: list[int] = []
        size = len(data)
        if size < FINGERPRINT_BYTES:
            return found
        fingerprints, offsets, sizes, tails = self._fingerprints, self._offset, self._size, self._tail
        for automaton in self._automata:
            for _, at, _ in automaton.find_matches_as_indexes(data, overlapping=True):
                known = fingerprints.get(hash(data[at : at + FINGERPRINT_BYTES]))
                if known is None:
                    continue
                for other in known if isinstance(known, tuple) else (known,):
                    start = at - offsets[other]
                    end = start + sizes[other]
                    if start < 0 or end > size or other == own or other in found:
                        continue
                    if hash(data[end - FINGERPRINT_BYTES : end]) != tails[other]:
                        continue
                    # UTF-8 is self-synchronising: equal bytes here are the same characters in the text.
                    if hashlib.sha256(data[start:end]).hexdigest() == self.documents[other]["sha256"]:
                        found.append(other)
        return found


def audit_lines(
    root: Path,
    files: Sequence[Path],
    documents: Sequence[Mapping[str, Any]],
    template: RequestTemplate,
    *,
    index: NestingIndex | None = None,
) -> AuditReport:
    """Check isolation before anything is sent: each line is the template with one document of the manifest in it.

    With an index already built from the documents (prepare has their texts), one pass; without
    one (the audit command, submit), a first pass builds it from the lines that check out.
    """
    auditor = _Auditor(root, files, documents, index or NestingIndex(documents), build_index=index is None)
    if index is not None:
        index.finish()
    parse = template.parse
    for file_no, number, raw in _raw_lines(files):
        parsed = parse(raw)
        if parsed is not None:
            auditor.check(file_no, number, parsed[0], parsed[1], True, None)
        elif raw.strip():
            auditor.check(file_no, number, *_diagnose(raw, template))
    auditor.check_all_sent()
    if index is None:
        auditor.nesting.finish()
        for file_no, number, raw in _raw_lines(files):
            found: tuple[str | None, str] | None = parse(raw)
            if found is None and raw.strip():
                custom_id, text, _, _ = _diagnose(raw, template)
                found = (custom_id, text) if text is not None else None
            if found is not None:
                auditor.check_nesting(file_no, number, found[0], found[1].encode())
    report = auditor.report
    if auditor.nesting.unchecked:
        report.warning(
            f"{auditor.nesting.unchecked} documents share their fingerprint with {MAX_SHARED} or more others"
            " and were not looked for inside other documents"
        )
    if report.unreported:
        report.problems.append(f"… and {report.unreported} more problems")
    return report


class _Auditor:
    """The audit's state: where each document's line was first seen and whether it carried the document exactly."""

    def __init__(
        self,
        root: Path,
        files: Sequence[Path],
        documents: Sequence[Mapping[str, Any]],
        nesting: NestingIndex,
        *,
        build_index: bool,
    ):
        self.files = [_relative(root, path) for path in files]
        self.documents = documents
        self.nesting = nesting
        self.build_index = build_index
        self.report = AuditReport(documents=len(documents))
        self.index_of = {d["custom_id"]: k for k, d in enumerate(documents)}
        # Arrays, not dicts: a few bytes per document whatever the corpus holds. Line 0 = no line yet.
        self.first_file = array("i", [-1]) * len(documents)
        self.first_line = array("i", [0]) * len(documents)
        self.exact = bytearray(len(documents))

    def where(self, file_no: int, number: int, custom_id: str | None) -> str:
        return f"{self.files[file_no]} line {number}" + (f" ({custom_id})" if custom_id else "")

    def check(
        self, file_no: int, number: int, custom_id: str | None, text: str | None, user_ok: bool, problem: str | None
    ) -> None:
        """One line: its custom_id known and first seen here, its user message exactly that document."""
        report = self.report
        report.lines += 1
        if problem:
            report.problem(f"{self.where(file_no, number, custom_id)}: {problem}")
        if custom_id is None:
            return
        own = self.index_of.get(custom_id)
        if own is None:
            report.problem(
                f"{self.where(file_no, number, custom_id)}: custom_id {custom_id} is not a document of this job"
            )
        elif self.first_line[own]:
            earlier = f"{self.files[self.first_file[own]]} line {self.first_line[own]}"
            report.problem(
                f"{self.where(file_no, number, custom_id)}: custom_id {custom_id} is used again (first on {earlier})"
            )
        else:
            self.first_file[own], self.first_line[own] = file_no, number
            if text is not None and user_ok:
                data = text.encode()
                doc = self.documents[own]
                if hashlib.sha256(data).hexdigest() == doc["sha256"]:
                    self.exact[own] = 1
                    if self.build_index:
                        self.nesting.add(data, own)
                else:
                    report.problem(
                        f"{self.where(file_no, number, custom_id)}: the user message is not exactly document"
                        f" {doc['path']} ({len(text)} chars, the document has {doc['chars']})"
                    )
                if not self.build_index:
                    self.check_nesting(file_no, number, custom_id, data)
                return
        if not self.build_index and text is not None:
            self.check_nesting(file_no, number, custom_id, text.encode())

    def check_all_sent(self) -> None:
        for k, doc in enumerate(self.documents):
            if not self.first_line[k]:
                self.report.problem(f"document {doc['path']} ({doc['custom_id']}) has no request line")

    def check_nesting(self, file_no: int, number: int, custom_id: str | None, data: bytes) -> None:
        own = self.index_of.get(custom_id) if custom_id is not None else None
        inside = self.nesting.held_in(data, own)
        if not inside:
            return
        # A line is its document's own line only where that document was first seen, carrying it exactly.
        clean = (
            own is not None and self.exact[own] and self.first_file[own] == file_no and self.first_line[own] == number
        )
        for other in inside:
            inner = self.documents[other]["path"]
            if clean and own is not None:  # clean implies own
                # The input file itself holds another input file (an anthology and its chapter): both are
                # sent, each alone on its line, so nothing crosses; the user should know all the same.
                self.report.warning(f"document {self.documents[own]['path']} contains the whole of document {inner}")
            else:
                self.report.problem(
                    f"{self.where(file_no, number, custom_id)}: holds the whole of document {inner},"
                    " which has its own line"
                )


def _raw_lines(files: Sequence[Path]) -> Iterator[tuple[int, int, bytes]]:
    """(file number, line number, the line's bytes) for every line of every file."""
    for file_no, path in enumerate(files):
        # A large buffer: request lines are a few KB each, and the default 8 KB buffer makes line
        # iteration ten times slower.
        with path.open("rb", buffering=_READ_BUFFER) as fh:
            for number, raw in enumerate(fh, start=1):
                yield file_no, number, raw


def _relative(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _diagnose(raw: bytes, template: RequestTemplate) -> tuple[str | None, str | None, bool, str | None]:
    """(custom_id, text to look in, user message in place?, what differs from the template) for an off-template line."""
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None, False, "not valid JSON — the file was cut or edited; prepare the job again"
    if not isinstance(line, dict):
        return None, None, False, "not a JSON object"
    custom_id = line.get("custom_id") if isinstance(line.get("custom_id"), str) else None
    if custom_id is None:
        return None, _all_text(line), False, "no custom_id"
    body = line.get("body")
    want_body = template.line["body"]
    msg_key = message_field(want_body)
    messages = body.get(msg_key) if isinstance(body, dict) else None
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages] if isinstance(messages, list) else None
    if roles != ["system", "user"]:
        return custom_id, _all_text(line), False, f"expected one system and one user message, found {roles}"
    assert isinstance(body, dict) and isinstance(messages, list)
    system, user = messages
    text = user.get("content")
    if not isinstance(text, str):
        return custom_id, _all_text(line), False, "the user message is not text"
    if system.get("content") != want_body[msg_key][0]["content"]:
        return custom_id, text, True, "the system message differs from the job's prompt template"
    differs = [
        key
        for key in sorted(set(line) | set(template.line))
        if key not in ("custom_id", "body") and line.get(key) != template.line.get(key)
    ]
    differs += [
        f"body.{key}"
        for key in sorted(set(body) | set(want_body))
        if key != msg_key and body.get(key) != want_body.get(key)
    ]
    want_user = {**want_body[msg_key][1], "content": text}
    if system != want_body[msg_key][0] or user != want_user:
        differs.append(f"body.{msg_key}")
    if differs:
        verb = "differs" if len(differs) == 1 else "differ"
        return custom_id, text, True, f"{', '.join(differs)} {verb} from the job's request template"
    return custom_id, text, True, None  # the same line written differently (spacing, key order): fine


def _all_text(line: Any) -> str:
    """Every string in the line, joined: where to look for other documents in a line that is off-template."""
    out: list[str] = []
    stack = [line]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return "\n".join(out)


def job_template(job: Job) -> RequestTemplate:
    """The request template a job's lines were made from, as its manifest records it."""
    text = job.manifest.get("request_template")
    if not isinstance(text, str):
        raise BadInput(
            f"Job {job.id} has no request template in job.json (made by an older version) — prepare it again"
        )
    return RequestTemplate.from_json(text)


def audit_job(job: Job) -> AuditReport:
    """The audit of a job folder as it is on disk now: two streaming passes over its request files."""
    template = job_template(job)
    report = audit_lines(job.path, job.request_files(), job.documents(), template)
    msg_key = message_field(template.line["body"])
    system = template.line["body"][msg_key][0]["content"]
    if hashlib.sha256(system.encode()).hexdigest() != job.manifest.get("prompt", {}).get("sha256"):
        report.problems.insert(
            0, "job.json: the request template's system message is not the job's prompt (sha256 differs)"
        )
    if DOCUMENT_SLOT not in [m.get("content") for m in template.line["body"][msg_key]]:
        report.problems.insert(0, f"job.json: the request template has no {DOCUMENT_SLOT} user message")
    return report


def require_isolated(job: Job) -> AuditReport:
    """Refuse a job whose request lines fail the audit (exit 2), naming the first problems."""
    report = audit_job(job)
    if not report.ok:
        shown = "; ".join(report.problems[:3])
        more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        raise BadInput(
            f"Job {job.id} failed the isolation audit: {shown}{more} — run `extractor audit {job.id}`"
            " for every problem, then prepare the documents again"
        )
    return report
