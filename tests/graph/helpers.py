"""Helpers for the graph tests (their fixtures are in tests/graph/conftest.py): a real embedded FalkorDB and a real
Neo4j, one each per session.

`graph_target` (and `graph_store` on it) is parametrised over both stores, so a test written once
runs on each. FalkorDB gives each test a graph of its own; Neo4j Community has one database per
server, so each test clears it before and after. With NEO4J_URI set, the Neo4j tests run against
that server instead (NEO4J_USERNAME, NEO4J_PASSWORD, optionally NEO4J_DATABASE): point it at a
throwaway database, since the tests delete every node in it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import strategies as st

from extractor.graph import (
    CommitDocument,
    EntityMention,
    GraphVocabulary,
    RelationFact,
    commit_job,
    dump_graph,
    open_store,
    rollback_job,
)
from extractor.graph.cypher import Statement
from extractor.graph.falkordb_store import FalkorStore
from extractor.graph.store import GraphStore
from tests.neo4j_server import missing_tools

VOCABULARY = GraphVocabulary.from_types(
    ["PERSON", "ORGANIZATION", "LOCATION", "DATE", "NUMBER", "EVENT", "WORK", "OTHER"],
    ["WORKS_FOR", "LOCATED_IN", "BORN_IN", "FOUNDED"],
)
CLEAR = Statement("clear", "MATCH (n) DETACH DELETE n")
STORES = ("falkordb", "neo4j")


@dataclass(frozen=True)
class Neo4jCredentials:
    uri: str
    username: str
    password: str | None
    database: str | None = None

    def env(self) -> dict[str, str]:
        return {
            "NEO4J_USERNAME": self.username,
            **({"NEO4J_PASSWORD": self.password} if self.password is not None else {}),
        }


def neo4j_home() -> Path:
    """A fresh folder for the session's Neo4j: in memory where there is a tmpfs (the tests commit
    thousands of small transactions, each a log flush), removed at exit."""
    shm = Path("/dev/shm")
    home = Path(tempfile.mkdtemp(prefix="extractor-neo4j-", dir=shm if os.access(shm, os.W_OK) else None))
    atexit.register(shutil.rmtree, home, True)
    return home


def neo4j_wanted(items: list[pytest.Item]) -> bool:
    """Whether the collected tests use the session's own Neo4j (pytest_collection_finish asks)."""
    if os.environ.get("NEO4J_URI") or missing_tools():
        return False
    return any(
        "neo4j_server" in item.fixturenames
        or (hasattr(item, "callspec") and item.callspec.params.get("graph_target") == "neo4j")
        for item in items
    )


@dataclass
class GraphTarget:
    """One store under test, as the CLI names it: `--graph URI [--database NAME]` plus its environment."""

    kind: str  # "falkordb" | "neo4j"
    uri: str
    database: str | None
    env: dict[str, str] = field(default_factory=dict)

    def cli_args(self) -> list[str]:
        return ["--graph", self.uri, *(["--database", self.database] if self.database else [])]

    def open(self) -> AbstractContextManager[GraphStore]:
        """The store through `open_store`, as the CLI opens it (environment set by the fixture)."""
        return open_store(self.uri, database=self.database, data_dir=Path(self.env.get("EXTRACTOR_DATA_DIR", "unused")))


def connect(socket_path: Path, graph: str) -> FalkorStore:
    """A store on `graph` of the FalkorDB server at `socket_path`, indexes in place."""
    store = FalkorStore.connect(target=f"test graph {graph}", graph=graph, unix_socket_path=str(socket_path))
    store.ensure_schema()
    return store


def clear(store: GraphStore) -> None:
    store.write([(CLEAR, {})])


def doc(
    doc_id: str,
    entities: list[tuple[str, str]],
    relations: list[tuple[str, str, str, str, str, str]] = (),
    *,
    path: str | None = None,
    title: str | None = None,
) -> CommitDocument:
    """A document from (name, type) entities and (source, source_type, type, target, target_type, evidence)
    relations."""
    return CommitDocument(
        doc_id=doc_id,
        sha256=f"sha-{doc_id}",
        path=path or f"docs/{doc_id}.txt",
        title=title or f"Title {doc_id}",
        entities=tuple(
            EntityMention(name, type_, (i * 10, i * 10 + len(name))) for i, (name, type_) in enumerate(entities)
        ),
        relations=tuple(RelationFact(*relation) for relation in relations),
    )


def job_j() -> list[CommitDocument]:
    return [
        doc("d1", [("Ada Lovelace", "PERSON"), ("Analytical Society", "ORGANIZATION")],
            [("Ada Lovelace", "PERSON", "WORKS_FOR", "Analytical Society", "ORGANIZATION",
              "Ada worked for the Society")]),
        doc("d2", [("Charles Babbage", "PERSON"), ("London", "LOCATION")],
            [("Charles Babbage", "PERSON", "knew", "Ada Lovelace", "PERSON", "Babbage knew Ada")]),
    ]  # fmt: skip


def job_k() -> list[CommitDocument]:
    return [
        doc("d2", [("charles babbage", "person"), ("London", "LOCATION")], path="elsewhere/d2.txt"),
        doc("d3", [("Ada Lovelace", "PERSON"), ("London", "LOCATION")],
            [("Ada Lovelace", "PERSON", "born in", "London", "LOCATION", "Ada was born in London")]),
    ]  # fmt: skip


def many_docs(count: int) -> list[CommitDocument]:
    """`count` documents sharing a small pool of entities, deterministic."""
    people = ["Ada Lovelace", "Charles Babbage", "Mary Somerville", "Michael Faraday", "John Herschel"]
    places = ["London", "Paris", "Turin", "Edinburgh"]
    docs = []
    for i in range(count):
        person, other, place = people[i % 5], people[(i + 2) % 5], places[i % 4]
        docs.append(
            doc(
                f"doc{i:04d}",
                [(person, "PERSON"), (other, "PERSON"), (place, "LOCATION"), (f"Paper {i}", "WORK")],
                [
                    (person, "PERSON", "LOCATED_IN", place, "LOCATION", f"{person} lived in {place}"),
                    (person, "PERSON", "corresponded with", other, "PERSON", f"{person} wrote to {other}"),
                ],
            )
        )
    return docs


class Interrupted(Exception):
    """Raised from a progress callback to stop a commit after some chunks landed."""


def stop_after(chunks: int) -> Callable[[int], None]:
    """A progress callback that interrupts the commit once `chunks` chunks have landed."""
    landed: list[int] = []

    def progress(count: int) -> None:
        landed.append(count)
        if len(landed) == chunks:
            raise Interrupted

    return progress


def assert_rollback_is_exact(
    store: GraphStore,
    jobs: list[tuple[str, list[CommitDocument]]],
    rolled: int,
    *,
    chunk_size: int,
    partial: bool,
    log_dir: Path,
    clear: Callable[[GraphStore], None] = clear,
) -> None:
    """Rolling back jobs[rolled] leaves the graph equal to the graph where it was never committed."""
    clear(store)
    for index, (job, docs) in enumerate(jobs):
        if index != rolled:
            commit_job(
                store,
                job,
                docs,
                log_path=log_dir / "without" / job / "commit.json",
                vocabulary=VOCABULARY,
                chunk_size=chunk_size,
            )
    expected = dump_graph(store)

    clear(store)
    for index, (job, docs) in enumerate(jobs):
        log_path = log_dir / "with" / job / "commit.json"
        if index == rolled and partial and len(docs) > chunk_size:
            with pytest.raises(Interrupted):
                commit_job(
                    store,
                    job,
                    docs,
                    log_path=log_path,
                    vocabulary=VOCABULARY,
                    chunk_size=chunk_size,
                    progress=stop_after(1),
                )
        else:
            commit_job(store, job, docs, log_path=log_path, vocabulary=VOCABULARY, chunk_size=chunk_size)
    job = jobs[rolled][0]
    rollback_job(store, job, log_path=log_dir / "with" / job / "commit.json")
    assert dump_graph(store) == expected


# Surface forms that share keys ("Ada Lovelace" / "ada  lovelace"), types in and out of the
# allow-list, a name under two types, relation types allowed, sanitisable, foreign and reserved.
ENTITIES = [
    ("Ada Lovelace", "PERSON"), ("ada  lovelace", "person"), ("ADA LOVELACE", "PERSON"),
    ("Charles Babbage", "PERSON"), ("IBM", "ORGANIZATION"), ("ibm", "Organization"),
    ("London", "LOCATION"), ("London", "OTHER"), ("Widget", "custom thing"),
]  # fmt: skip
RELATION_TYPES = ["WORKS_FOR", "works for", "located in", "invented", "MENTIONED_IN"]
DOC_IDS = ["d1", "d2", "d3", "d4", "d5"]


@st.composite
def documents(draw: st.DrawFn, doc_id: str) -> CommitDocument:
    spans = st.one_of(st.none(), st.tuples(st.integers(0, 40), st.integers(0, 40)).map(lambda s: tuple(sorted(s))))
    entities = draw(st.lists(st.tuples(st.sampled_from(ENTITIES), spans), max_size=4))
    relations = draw(
        st.lists(
            st.tuples(
                st.sampled_from(ENTITIES),
                st.sampled_from(RELATION_TYPES),
                st.sampled_from(ENTITIES),
                st.sampled_from(["ev1", "ev2"]),
            ),
            max_size=3,
        )
    )
    return CommitDocument(
        doc_id=doc_id,
        sha256=draw(st.sampled_from(["s1", "s2"])),
        path=draw(st.sampled_from(["a.txt", "b.txt"])),
        title=draw(st.sampled_from(["T1", "T2"])),
        entities=tuple(EntityMention(name, type_, span) for (name, type_), span in entities),
        relations=tuple(
            RelationFact(source, source_type, rel_type, target, target_type, evidence)
            for (source, source_type), rel_type, (target, target_type), evidence in relations
        ),
    )


@st.composite
def job_sequences(draw: st.DrawFn) -> tuple[list[tuple[str, list[CommitDocument]]], int]:
    """2–4 jobs over a pool of 5 documents and 9 entity spellings, and the index of the job to roll back."""
    count = draw(st.integers(2, 4))
    jobs = []
    for index in range(count):
        doc_ids = draw(st.lists(st.sampled_from(DOC_IDS), min_size=1, max_size=4, unique=True))
        jobs.append((f"job{index}", [draw(documents(doc_id)) for doc_id in doc_ids]))
    return jobs, draw(st.integers(0, count - 1))
