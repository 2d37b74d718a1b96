"""The FalkorDB store: the native `falkordb` client, each write batch one MULTI/EXEC transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis
from falkordb import FalkorDB
from falkordb.helpers import stringify_param_value
from falkordb.query_result import QueryResult

from extractor.errors import BadInput, ExtractorError, ServiceUnavailable
from extractor.graph.cypher import INDEXED_KEYS, Dialect, Statement, relationship_index, schema_statements
from extractor.graph.store import WriteCounts

DEFAULT_GRAPH = "extractor_staging"
_UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class FalkorStore:
    """A graph in a FalkorDB server."""

    dialect: Dialect = "falkordb"

    def __init__(self, db: FalkorDB, graph_name: str, target: str):
        self._db = db
        self._graph = db.select_graph(graph_name)
        self.graph_name = graph_name
        self.target = target

    @classmethod
    def connect(
        cls,
        *,
        target: str,
        graph: str = DEFAULT_GRAPH,
        unix_socket_path: str | None = None,
        host: str = "127.0.0.1",
        port: int = 6379,
        username: str | None = None,
        password: str | None = None,
    ) -> FalkorStore:
        """Connect and check that the server speaks FalkorDB; `target` names it in errors (no credentials)."""
        try:
            db = FalkorDB(
                host=host,
                port=port,
                unix_socket_path=unix_socket_path,
                username=username,
                password=password,
                socket_connect_timeout=5,
            )
            db.connection.execute_command("GRAPH.LIST")
        except redis.exceptions.AuthenticationError as exc:
            raise BadInput(
                f"FalkorDB at {target} rejected the credentials ({exc}) — check the user and password in the URI"
            ) from exc
        except _UNREACHABLE as exc:
            raise ServiceUnavailable(f"FalkorDB at {target} is unreachable: {exc}") from exc
        except redis.exceptions.ResponseError as exc:
            if "unknown command" in str(exc).lower():
                raise BadInput(f"{target} is a Redis server without the FalkorDB module — load falkordb.so") from exc
            raise
        return cls(db, graph, target)

    def ensure_schema(self, relationship_types: Iterable[str] = ()) -> None:
        existing = self._indexed_keys()
        wanted = [
            (("NODE", label, key), statement)
            for (label, key), statement in zip(INDEXED_KEYS, schema_statements(self.dialect), strict=True)
        ]
        wanted += [
            (("RELATIONSHIP", t, "doc_id"), relationship_index(self.dialect, t))
            for t in sorted(set(relationship_types))
        ]
        for index, statement in wanted:
            if index in existing:
                continue
            try:
                self._graph.query(statement.query)
            except redis.exceptions.ResponseError as exc:
                if "already indexed" not in str(exc):  # another process created it meanwhile
                    raise self._failed(statement, exc) from exc
            except _UNREACHABLE as exc:
                raise ServiceUnavailable(f"FalkorDB at {self.target} is unreachable: {exc}") from exc

    def _indexed_keys(self) -> set[tuple[str, str, str]]:
        """(NODE or RELATIONSHIP, label or type, property) of every index."""
        try:
            result = self._graph.ro_query(
                "CALL db.indexes() YIELD entitytype, label, properties RETURN entitytype, label, properties"
            )
        except redis.exceptions.ResponseError:
            return set()  # a graph that does not exist yet has no indexes
        except _UNREACHABLE as exc:
            raise ServiceUnavailable(f"FalkorDB at {self.target} is unreachable: {exc}") from exc
        return {(kind, label, key) for kind, label, keys in result.result_set for key in keys}

    def read(self, statement: Statement, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            result = self._graph.ro_query(statement.query, dict(parameters or {}))
        except _UNREACHABLE as exc:
            raise ServiceUnavailable(f"FalkorDB at {self.target} is unreachable: {exc}") from exc
        except redis.exceptions.ResponseError as exc:
            if "empty key" in str(exc):
                return []  # the graph does not exist yet
            raise self._failed(statement, exc) from exc
        names = [column[1] for column in result.header]
        return [dict(zip(names, row, strict=True)) for row in result.result_set]

    def write(self, batch: Sequence[tuple[Statement, Mapping[str, Any]]]) -> WriteCounts:
        return self.send(self.prepare(batch))

    def prepare(self, batch: Sequence[tuple[Statement, Mapping[str, Any]]]) -> list[tuple[Statement, bytes]]:
        """Each statement with its parameters quoted into the query, as bytes ready to send."""
        return [(statement, with_parameters(statement.query, parameters).encode()) for statement, parameters in batch]

    def send(self, prepared: list[tuple[Statement, bytes]]) -> WriteCounts:
        # MULTI/EXEC: the server runs the whole batch or, if this client dies before EXEC,
        # none of it, and no other client's query runs in between.
        pipe = self._db.connection.pipeline(transaction=True)
        for _, query in prepared:
            pipe.execute_command("GRAPH.QUERY", self.graph_name, query, "--compact")
        try:
            replies = pipe.execute(raise_on_error=False)
        except _UNREACHABLE as exc:
            raise ServiceUnavailable(f"FalkorDB at {self.target} is unreachable: {exc}") from exc
        counts = WriteCounts()
        for (statement, _), reply in zip(prepared, replies, strict=True):
            if isinstance(reply, Exception):
                raise self._failed(statement, reply)
            try:
                result = QueryResult(self._graph, reply)
            except redis.exceptions.ResponseError as exc:
                raise self._failed(statement, exc) from exc
            counts += WriteCounts(
                int(result.nodes_created),
                int(result.nodes_deleted),
                int(result.relationships_created),
                int(result.relationships_deleted),
            )
        return counts

    def close(self) -> None:
        self._db.connection.close()

    def _failed(self, statement: Statement, exc: Exception) -> ExtractorError:
        return ExtractorError(f"FalkorDB at {self.target} failed statement {statement.name}: {exc}")


def with_parameters(query: str, parameters: Mapping[str, Any]) -> str:
    """The query behind a `CYPHER name=value …` header, how FalkorDB receives parameters (quoted by the client)."""
    if not parameters:
        return query
    header = " ".join(f"{name}={stringify_param_value(value)}" for name, value in parameters.items())
    return f"CYPHER {header} {query}"
