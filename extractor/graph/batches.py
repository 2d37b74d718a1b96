"""Documents → deterministic chunks of statement rows (same documents, same chunks, same rows)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from extractor.errors import BadInput
from extractor.graph import cypher
from extractor.graph.cypher import Statement
from extractor.graph.model import (
    CommitDocument,
    EntityMention,
    GraphVocabulary,
    RelationFact,
    canonical_type,
    entity_key,
    has_name,
)

T = TypeVar("T")
_END: Any = object()


@dataclass(frozen=True)
class Chunk:
    index: int
    doc_ids: tuple[str, ...]
    batch: tuple[tuple[Statement, dict[str, Any]], ...]  # the statements, in order, with their parameters
    entity_keys: frozenset[str]
    mentions: int
    relationships: int
    sha256: str  # of the batch: what a resumed commit checks a landed chunk against
    relationship_types: frozenset[str] = frozenset()  # the types its relationship statements write


def sorted_documents(documents: Iterable[CommitDocument]) -> list[CommitDocument]:
    """The documents in doc_id order; a doc_id twice is an error (one job commits a document once)."""
    docs = list(documents)
    for doc in docs:
        if not isinstance(doc.doc_id, str) or not doc.doc_id:
            raise BadInput(f"a document without a doc_id cannot be committed ({doc.path!r})")
    ordered = sorted(docs, key=lambda doc: doc.doc_id)
    for before, after in itertools.pairwise(ordered):
        if before.doc_id == after.doc_id:
            raise BadInput(f"document {before.doc_id!r} is given twice to one commit — commit each document once")
    return ordered


def iter_chunks(
    documents: Sequence[CommitDocument], job_id: str, vocabulary: GraphVocabulary, chunk_size: int
) -> Iterator[Chunk]:
    """Chunks of `chunk_size` documents (already sorted), each built only when reached."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    for index, start in enumerate(range(0, len(documents), chunk_size)):
        yield build_chunk(index, documents[start : start + chunk_size], job_id, vocabulary)


def prefetched(items: Iterator[T]) -> Iterator[T]:
    """The items of `items`, each next one computed in a thread while the caller uses the current one."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="graph-prefetch") as pool:
        ahead = pool.submit(next, items, _END)
        while (item := ahead.result()) is not _END:
            ahead = pool.submit(next, items, _END)
            yield item


def build_chunk(index: int, documents: Sequence[CommitDocument], job_id: str, vocabulary: GraphVocabulary) -> Chunk:
    """The statements that write these documents: documents first, then entities with mentions, then relations."""
    doc_rows: list[dict[str, Any]] = []
    entities: dict[str, dict[str, Any]] = {}
    labels: dict[str, str | None] = {}
    relations: dict[tuple[str, bool], dict[tuple[str, ...], dict[str, Any]]] = {}
    mentions = 0
    for doc in map(_cleaned, documents):
        doc_id = doc.doc_id
        doc_rows.append({"doc_id": doc_id, "sha256": doc.sha256, "path": doc.path, "title": doc.title})
        for key, (type_, name, span) in _document_mentions(doc).items():
            entity = entities.get(key)
            if entity is None:
                entity = entities[key] = {"key": key, "type": canonical_type(type_), "mentions": []}
                labels[key] = vocabulary.label_for(type_)
            entity["mentions"].append({"doc_id": doc_id, "name": name, "span": span})
            mentions += 1
        for relation in doc.relations:
            if not (has_name(relation.source) and has_name(relation.target)):
                continue
            rel_type, fallback = vocabulary.relationship_for(relation.type)
            source = entity_key(relation.source_type, relation.source)
            target = entity_key(relation.target_type, relation.target)
            row = {"source": source, "target": target, "doc_id": doc_id, "evidence": relation.evidence}
            identity: tuple[str, ...] = (doc_id, source, target, relation.evidence)
            if fallback:
                row["original_type"] = relation.type
                identity += (relation.type,)
            relations.setdefault((rel_type, fallback), {}).setdefault(identity, row)

    job = {"job": job_id}
    batch: list[tuple[Statement, dict[str, Any]]] = [(cypher.UPSERT_DOCUMENTS, {**job, "rows": doc_rows})]
    by_label: dict[str | None, list[dict[str, Any]]] = {}
    for key in sorted(entities):
        by_label.setdefault(labels[key], []).append(entities[key])
    for label in sorted(by_label, key=lambda value: value or ""):
        batch.append((cypher.upsert_entities(label), {**job, "rows": by_label[label]}))
    relationships = 0
    for rel_type, fallback in sorted(relations):
        rows = [relations[(rel_type, fallback)][k] for k in sorted(relations[(rel_type, fallback)])]
        relationships += len(rows)
        batch.append((cypher.merge_relationships(rel_type, fallback), {**job, "rows": rows}))
    digest = hashlib.sha256(orjson.dumps([[statement.name, parameters] for statement, parameters in batch])).hexdigest()
    return Chunk(
        index=index,
        doc_ids=tuple(doc.doc_id for doc in documents),
        batch=tuple(batch),
        entity_keys=frozenset(entities),
        mentions=mentions,
        relationships=relationships,
        sha256=digest,
        relationship_types=frozenset(rel_type for rel_type, _ in relations),
    )


def _document_mentions(doc: CommitDocument) -> dict[str, tuple[str, str, list[int] | None]]:
    """key → (type, name, span): one mention per entity key, from the entities and the relation ends."""
    candidates = [(e.name, e.type, _span(e.span)) for e in doc.entities]
    for r in doc.relations:  # an end the document did not list still gets a mention, without a span
        candidates += ((r.source, r.source_type, None), (r.target, r.target_type, None))
    chosen: dict[str, tuple[tuple[Any, ...], str, str, list[int] | None]] = {}
    for name, type_, span in candidates:
        if not has_name(name):
            continue
        key = entity_key(type_, name)
        current = chosen.get(key)
        if current is not None and span is None and current[3] is not None:
            continue
        clean = " ".join(name.split())
        # deterministic whatever the answer's order: a located mention first, then the smallest name
        rank = (span is None, clean, span or [])
        if current is None or rank < current[0]:
            chosen[key] = (rank, type_, clean, span)
    return {key: (type_, name, span) for key, (_, type_, name, span) in chosen.items()}


def _cleaned(doc: CommitDocument) -> CommitDocument:
    """The document with every string storable (see `_text`); most documents already are."""
    strings = [doc.sha256, doc.path, doc.title]
    for e in doc.entities:
        strings += (e.name, e.type)
    for r in doc.relations:
        strings += (r.source, r.source_type, r.type, r.target, r.target_type, r.evidence)
    try:
        joined = "".join(strings)
    except TypeError:  # a value that is not a string
        joined = "\x00"
    if "\x00" not in joined and (joined.isascii() or _encodable(joined)):
        return doc
    return CommitDocument(
        doc_id=doc.doc_id,
        sha256=_text(doc.sha256),
        path=_text(doc.path),
        title=_text(doc.title),
        entities=tuple(EntityMention(_text(e.name), _text(e.type), e.span) for e in doc.entities),
        relations=tuple(
            RelationFact(*map(_text, (r.source, r.source_type, r.type, r.target, r.target_type, r.evidence)))
            for r in doc.relations
        ),
    )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: Any) -> str:
    """A string safe to store: str, no NUL, no lone surrogate (which cannot be encoded)."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    if text.isascii() and "\x00" not in text:
        return text  # the common case, and surrogates are never ASCII
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _span(span: Any) -> list[int] | None:
    """[start, end] when `span` is two offsets 0 <= start <= end, else None."""
    if span is None or not isinstance(span, (tuple, list)) or len(span) != 2:
        return None
    start, end = span
    if type(start) is int and type(end) is int and 0 <= start <= end:  # bool is not an offset
        return [start, end]
    return None
