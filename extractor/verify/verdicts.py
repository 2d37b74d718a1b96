"""Verdicts for every entity and relation of a job, quarantine per document, verify.json.

Streaming, in three steps, so memory holds the normalised texts and little else:
1. Each answer against its own document: results.jsonl and the request lines are read side
   by side (both in manifest order); every entity name, relation end and evidence quote is
   aligned. A document whose facts were all found is decided at once and its entry spilled
   to disk; one with something not found keeps its draft until step 2 says where it came
   from. The document's normalised text is kept for step 2 (normalised once, here).
2. One Aho-Corasick scan of every normalised text, then of the `--against` corpus read one
   document at a time, for all the names not found in their own document that could be a
   leak, each looked up as `leaks.leak_rule` says (a date by every written form of its value,
   a one-word name only where written as a name, type words and bare years not at all).
3. The waiting documents are decided, and verify.json is assembled from the spill.

Verdicts: an entity is grounded/fuzzy (found in its own text, `span` into it), leaked (not
there, but in other documents: `sources`) or ungrounded (nowhere). A relation takes the
worst verdict of its parts (leaked > ungrounded > fuzzy > grounded): both ends must name
entities of the same answer (an end naming no entity is ungrounded, or leaked when only
other documents hold it) and its evidence quote, when it has one, must align with the text.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

import orjson

from extractor.job_files import format_tag
from extractor.jobs import Job, State
from extractor.spec.schema import load_spec
from extractor.storage import atomic_file, read_versioned
from extractor.verify.alignment import Alignment
from extractor.verify.corpus import TextCursor, WiderCorpus, iter_job_texts
from extractor.verify.facts import AnswerReader
from extractor.verify.grounding import DocumentMatcher
from extractor.verify.index import NameScanner
from extractor.verify.leaks import LeakRule, corroborated, leak_rule, quote_rule
from extractor.verify.normalize import NormalizedText, name_variants, normalize, normalize_name
from extractor.verify.policy import Policy

__all__ = ["VERIFY_FORMAT", "Policy", "VerifySummary", "iter_job_texts", "read_report", "verify_job"]

VERIFY_FORMAT = format_tag("verify")
VERDICTS = ("grounded", "fuzzy", "leaked", "ungrounded")
FOUND = frozenset({"grounded", "fuzzy"})
_RANK = {"grounded": 0, "fuzzy": 1, "ungrounded": 2, "leaked": 3}
_PENDING = b"\x00\n"  # the spill line standing for a document decided in step 3
_LISTED = 5  # facts named in a reason before "and N more"
_CHUNK = 512  # verify.json documents per write
_NO_SOURCES: tuple[str, ...] = ()
_VERDICT = itemgetter("verdict")


@dataclass
class VerifySummary:
    job_id: str
    documents: int = 0
    clean: int = 0
    quarantined: int = 0
    failed: int = 0
    entities: Counter[str] = field(default_factory=Counter)
    relations: Counter[str] = field(default_factory=Counter)

    def count(self, entry: dict[str, Any]) -> None:
        self.documents += 1
        status = entry["status"]
        setattr(self, status, getattr(self, status) + 1)
        self.entities.update(map(_VERDICT, entry["entities"]))
        self.relations.update(map(_VERDICT, entry["relations"]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "clean": self.clean,
            "quarantined": self.quarantined,
            "failed": self.failed,
            "entities": {v: self.entities[v] for v in VERDICTS},
            "relations": {v: self.relations[v] for v in VERDICTS},
        }


def verify_job(job: Job, *, policy: Policy | None = None, against: list[WiderCorpus] | None = None) -> dict[str, Any]:
    """Align every fact with its own document, look for the unmatched ones elsewhere, decide, write verify.json.

    Returns verify.json without its documents (read them with `read_report`).
    """
    job.require(State.COLLECTED, State.VERIFIED, doing="be verified")
    spec = load_spec(Path(job.manifest["spec"]["path"]))
    resolved = (policy or Policy()).over(spec.policy)
    summary = VerifySummary(job_id=job.id)
    reader = AnswerReader(spec)
    schema_words = frozenset(word.casefold() for word in spec.entity_types() + spec.relation_types())
    with tempfile.TemporaryFile(dir=job.path, prefix=".verify-spill-") as spill:
        pending: list[dict[str, Any]] = []
        texts: list[
            tuple[str, NormalizedText]
        ] = []  # the originals stay too: a one-token name counts where written as one
        wanted: dict[str, LeakRule] = {}
        for entry, normalized in _align_documents(job, reader, schema_words):
            if normalized is not None:
                texts.append((entry["doc_id"], normalized))
            lookups = entry.pop("_lookups", None)
            if lookups:
                for key, rule in lookups:
                    if rule is not None:
                        wanted.setdefault(key, rule)
                pending.append(entry)
                spill.write(_PENDING)
            else:
                _decide(entry, {}, resolved, pending=False)
                summary.count(entry)
                spill.write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))

        scanner = NameScanner(wanted)
        external: dict[str, dict[str, str]] = {}  # --against documents that hold a name: where to find them
        if scanner.sources:
            for doc_id, text in texts:
                scanner.scan(doc_id, text)
            for corpus in against or []:
                for doc_id, path, raw in corpus.iter_texts():
                    if scanner.scan(doc_id, normalize(raw)):
                        external[doc_id] = {"path": path, **corpus.describe()}
            scanner.settle(len(texts))
        del texts

        for entry in pending:
            _decide(entry, scanner.sources, resolved, pending=True, weak=scanner.weak)
            summary.count(entry)
        header = {
            "format": VERIFY_FORMAT,
            "job_id": job.id,
            "policy": resolved.as_dict(),
            "against": [c.describe() for c in against or []],
            "external_sources": external,
            "summary": summary.as_dict(),
        }
        spill.seek(0)
        _write_report(job.verify_path, header, spill, iter(pending))
    job.transition(State.VERIFIED, verify=summary.as_dict())
    return header


def read_report(job: Job) -> dict[str, Any]:
    """verify.json, documents included."""
    report: dict[str, Any] = read_versioned(job.verify_path, "verify")
    return report


# ---------------------------------------------------------------- step 1: each answer against its own text


def _align_documents(
    job: Job, reader: AnswerReader, schema_words: frozenset[str]
) -> Iterator[tuple[dict[str, Any], NormalizedText | None]]:
    """(document entry, its normalised text) in manifest order; the entry holds `_lookups` when names await step 2."""
    meta = {d["custom_id"]: d for d in job.documents()}
    texts = TextCursor(iter_job_texts(job))
    rows = job.results_path.open("rb")
    with rows:
        for raw in rows:
            if not raw.strip():
                continue
            row = orjson.loads(raw)
            cid = row["custom_id"]
            doc = meta[cid]
            text = texts.take(cid)
            entry: dict[str, Any] = {
                "doc_id": doc["doc_id"],
                "custom_id": cid,
                "path": doc["path"],
                "status": None,
                "reasons": [],
            }
            if text is None:  # a request line gone missing: nothing to check the answer against
                yield (
                    {
                        **entry,
                        "status": "failed",
                        "reasons": ["no request line for this custom_id"],
                        "entities": [],
                        "relations": [],
                    },
                    None,
                )
                continue
            matcher = DocumentMatcher(text)
            normalized = matcher.normalized
            if row["outcome"] != "ok":
                reason = f"{row['outcome']}: {'; '.join(row.get('errors') or [])}"[:300]
                yield {**entry, "status": "failed", "reasons": [reason], "entities": [], "relations": []}, normalized
                continue
            try:
                entities, relations = reader.read(row["answer"])
            except ValueError as exc:
                yield (
                    {
                        **entry,
                        "status": "failed",
                        "reasons": [f"schema_invalid: {exc}"],
                        "entities": [],
                        "relations": [],
                    },
                    normalized,
                )
                continue
            yield _align_answer(entry, matcher, entities, relations, schema_words), normalized


def _align_answer(
    entry: dict[str, Any],
    matcher: DocumentMatcher,
    entities: list[tuple[str, str | None]],
    relations: list[tuple[str, str | None, str, str | None]],
    schema_words: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The document entry with a verdict for every fact found in the text; `_lookups` names the rest."""
    lookups: list[tuple[str | None, LeakRule | None]] = []
    ents: list[dict[str, Any]] = []
    by_name: dict[str, dict[str, Any]] = {}  # relation ends usually repeat an entity name as written
    align = matcher.align
    for name, kind in entities:
        first = by_name.get(name)  # a name listed twice is aligned once
        if first is None:
            verdict, span, _ = align(name, kind)
        else:
            verdict, span = first["verdict"], first["span"]
        # spans stay tuples and "no sources" one shared empty tuple: orjson writes both as arrays, and nothing
        # mutates them (a verdict decided later gets a new list)
        ent = {"name": name, "type": kind, "verdict": verdict, "span": span, "sources": _NO_SOURCES}
        if verdict is None:
            rule = _own_person(leak_rule(name, kind, schema_words), matcher)
            ent["_key"] = key = normalize_name(name) if rule is not None else None
            lookups.append((key, rule))
        ents.append(ent)
        if first is None:
            by_name[name] = ent
    by_key: dict[str, dict[str, Any]] | None = None
    quotes: dict[str, Alignment] = {}
    rels: list[dict[str, Any]] = []
    for source, kind, target, evidence in relations:
        head, tail = by_name.get(source), by_name.get(target)
        if head is None or tail is None:
            by_key = by_key if by_key is not None else _by_key(ents)
            head = head or _end(source, by_key, matcher, lookups, schema_words)
            tail = tail or _end(target, by_key, matcher, lookups, schema_words)
        # a relation with no evidence quote has nothing to align: its quote counts as found
        quote: str | None = "grounded"
        quote_span = None
        if evidence is not None:
            aligned = quotes.get(evidence)  # relations drawn from one sentence share their quote
            if aligned is None:
                aligned = quotes[evidence] = matcher.align_quote(evidence)
                rule = quote_rule(evidence) if aligned.verdict is None else None
                if rule is not None:
                    lookups.append((normalize_name(evidence), rule))
            quote, quote_span, _ = aligned
        rels.append(
            {
                "source": source,
                "type": kind,
                "target": target,
                "verdict": None,
                "evidence": evidence,
                "evidence_span": quote_span,
                "sources": _NO_SOURCES,
                "_ends": (head, tail),
                "_quote": quote,
            }
        )
    entry["entities"] = ents
    entry["relations"] = rels
    if lookups:
        entry["_lookups"] = lookups
    return entry


def _by_key(ents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The answer's entities by every exact-search form of their names ("Microsoft's" → "microsoft")."""
    by_key: dict[str, dict[str, Any]] = {}
    for ent in ents:
        key = normalize_name(ent["name"])
        for variant in name_variants(key) if key else ():
            by_key.setdefault(variant, ent)
    return by_key


def _end(
    name: str,
    by_key: dict[str, dict[str, Any]],
    matcher: DocumentMatcher,
    lookups: list[tuple[str | None, LeakRule | None]],
    schema_words: frozenset[str],
) -> Any:
    """A relation end: the answer's entity it names, else ("unlisted", key or None, found in this text).

    The key is None when the end cannot be a leak (see `_may_be_a_leak`): it is then not looked up elsewhere.
    """
    key = normalize_name(name)
    for variant in name_variants(key) if key else ():
        ent = by_key.get(variant)
        if ent is not None:
            return ent
    found = matcher.align(name).verdict is not None
    if found:
        return ("unlisted", key, True)
    rule = _own_person(leak_rule(name, None, schema_words), matcher) if _may_be_a_leak(name, schema_words) else None
    if rule is None:
        return ("unlisted", None, False)
    lookups.append((key, rule))
    return ("unlisted", key, False)


def _own_person(rule: LeakRule | None, matcher: DocumentMatcher) -> LeakRule | None:
    """No leak rule for "J. Smith" or "Dr. Smith" when the document itself holds a Smith: it left the name ambiguous
    (two Smiths), so it is ungrounded, not leaked."""
    person = rule.person if rule is not None else None
    if person is not None and (person.titled or any(person.initials)) and matcher.holds_token(person.tokens[-1]):
        return None
    return rule


def _may_be_a_leak(name: str, schema_words: frozenset[str]) -> bool:
    """Whether a relation end that is no entity of the answer, and not in its text, may have come from another document.

    Such an end is already malformed (relation ends name entities of the same answer) and is never committed.
    Flagging it as a leak quarantines the whole document, so it takes a name: weak models write the spec's
    own words ("LOCATION", "MEMBER_OF") or common nouns ("place") there, and finding those in some other
    document proves nothing. A name has a capital letter, a digit, or letters of a script without case.
    An answer that really carries another document's facts lists their entities too, and those keep the
    plain rule (leaked when found in another document).
    """
    stripped = name.strip()
    if not stripped or stripped.casefold() in schema_words:
        return False
    return any(c.isupper() or c.isdigit() or (c.isalpha() and c.lower() == c.upper()) for c in stripped)


# ---------------------------------------------------------------- steps 2 and 3: sources, then the policy


def _decide(
    entry: dict[str, Any],
    sources: dict[str, set[str]],
    policy: Policy,
    *,
    pending: bool,
    weak: dict[str, set[str]] | None = None,
) -> None:
    """Final verdicts from the leak scan (`weak` hits count where `leaks.corroborated`), then status and reasons from
    the policy."""
    if entry.get("status") == "failed":
        return
    own = entry["doc_id"]
    problems = False
    # a document that waited for no lookup has every verdict
    unknown = [ent for ent in entry["entities"] if ent["verdict"] is None] if pending else []
    if unknown:
        keys = [ent.pop("_key") for ent in unknown]
        found = {key: sources.get(key, set()) - {own} for key in keys if key is not None}
        if weak:
            maybe = {key: weak[key] - {own} for key in found if not found[key] and key in weak}
            if maybe:
                elsewhere = _found_in_relations(entry["relations"], sources, own)
                for key, documents in corroborated(maybe, found, elsewhere).items():
                    found[key] = documents
        for ent, key in zip(unknown, keys, strict=True):
            documents = found.get(key, set())  # a key of None (never a leak) is not in `found`
            ent["verdict"] = "leaked" if documents else "ungrounded"
            ent["sources"] = sorted(documents)
        problems = True
    why: dict[int, str] = {}
    for index, rel in enumerate(entry["relations"]):
        head, tail = rel.pop("_ends")
        quote = rel.pop("_quote")
        if (
            type(head) is dict
            and type(tail) is dict
            and quote in FOUND
            and head["verdict"] in FOUND
            and tail["verdict"] in FOUND
        ):
            fuzzy = "fuzzy" in (head["verdict"], tail["verdict"], quote)
            rel["verdict"] = "fuzzy" if fuzzy else "grounded"  # the common case, decided without the rules below
            continue
        rel["verdict"], rel["sources"], why[index] = _relation_verdict(rel, head, tail, quote, sources, own)
        problems = True
    if problems:
        entry["status"], entry["reasons"] = _apply_policy(entry, why, policy)
    else:
        entry["status"], entry["reasons"] = "clean", []


def _found_in_relations(relations: list[dict[str, Any]], sources: dict[str, set[str]], own: str) -> set[str]:
    """The other documents holding a relation end that is no entity of the answer, or an evidence quote."""
    found: set[str] = set()
    for rel in relations:
        for end in rel["_ends"]:
            if type(end) is not dict and end[1] is not None and not end[2]:
                found |= sources.get(end[1], set())
        if rel["_quote"] is None and rel["evidence"]:
            found |= sources.get(normalize_name(rel["evidence"]), set())
    return found - {own}


def _relation_verdict(
    rel: dict[str, Any], head: Any, tail: Any, quote: str | None, sources: dict[str, set[str]], own: str
) -> tuple[str, list[str], str]:
    """The worst verdict of the two ends and the evidence, the documents a leak came from, and what went wrong."""
    verdicts: list[str] = []
    found_in: set[str] = set()
    problems: list[str] = []
    for side, end in (("source", head), ("target", tail)):
        if type(end) is dict:
            verdict = end["verdict"]
            found_in.update(end["sources"] if verdict == "leaked" else ())
            if verdict not in FOUND:
                problems.append(f"{side} {verdict}")
        else:
            _, key, found_here = end
            other = set() if found_here or key is None else sources.get(key, set()) - {own}
            verdict = "leaked" if other else "ungrounded"
            found_in.update(other)
            problems.append(f"{side} is no entity of this answer" + (" and is in other documents" if other else ""))
        verdicts.append(verdict)
    if quote is None:
        other = sources.get(normalize_name(rel["evidence"]), set()) - {own}
        quote = "leaked" if other else "ungrounded"
        found_in.update(other)
        problems.append("evidence in other documents" if other else "evidence not in the text")
    verdicts.append(quote)
    verdict = max(verdicts, key=_RANK.__getitem__)
    return verdict, sorted(found_in) if verdict == "leaked" else [], ", ".join(problems)


def _apply_policy(entry: dict[str, Any], why: dict[int, str], policy: Policy) -> tuple[str, list[str]]:
    """clean or quarantined, and one reason per kind of problem, saying what the policy did about it."""
    reasons: list[str] = []
    quarantine = False
    for verdict in ("leaked", "ungrounded"):
        action = getattr(policy, verdict)
        ents = [e for e in entry["entities"] if e["verdict"] == verdict]
        rels = [(i, r) for i, r in enumerate(entry["relations"]) if r["verdict"] == verdict]
        if not ents and not rels:
            continue
        quarantine = quarantine or action == "quarantine"
        outcome = "document quarantined" if action == "quarantine" else "dropped from the commit"
        where = "found only in other documents of the job" if verdict == "leaked" else "found in no document"
        if ents:
            names = [e["name"] + (f" (in {', '.join(e['sources'][:3])})" if e["sources"] else "") for e in ents]
            reasons.append(
                f"{verdict}: {_plural(len(ents), 'entity', 'entities')} {where}: {_listed(names)} — {outcome}"
            )
        if rels:
            facts = [f"{r['source']} -{r['type'] or ''}-> {r['target']} ({why.get(i, '')})" for i, r in rels]
            reasons.append(f"{verdict}: {_plural(len(rels), 'relation', 'relations')}: {_listed(facts)} — {outcome}")
    return ("quarantined" if quarantine else "clean"), reasons


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _listed(items: list[str]) -> str:
    more = len(items) - _LISTED
    return "; ".join(items[:_LISTED]) + (f"; and {more} more" if more > 0 else "")


def _write_report(path: Path, header: dict[str, Any], spill: IO[bytes], pending: Iterator[dict[str, Any]]) -> None:
    """verify.json: the header, then one document a line, in manifest order; atomically."""
    with atomic_file(path) as out:
        out.write(orjson.dumps(header)[:-1] + b',\n"documents":[')
        parts: list[bytes] = []  # written a chunk at a time: one write call per document costs more than the copy
        separator = b"\n"
        for line in spill:
            parts.append(orjson.dumps(next(pending)) if line == _PENDING else line[:-1])
            if len(parts) == _CHUNK:
                out.write(separator + b",\n".join(parts))
                separator = b",\n"
                parts.clear()
        if parts:
            out.write(separator + b",\n".join(parts))
        out.write(b"\n]}\n")
