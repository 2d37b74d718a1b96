"""The Neo4j store: the official driver, each write batch one managed write transaction."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from extractor.errors import BadInput, ExtractorError, ServiceUnavailable
from extractor.graph.cypher import Dialect, Statement, relationship_index, schema_statements
from extractor.graph.store import WriteCounts

CONNECTION_TIMEOUT_S = 15.0
RETRY_TIME_S = 30.0  # how long managed transactions retry transient errors (the driver's default)
INDEX_WAIT_S = 300
AWAIT_INDEXES = Statement("await_indexes", "CALL db.awaitIndexes($seconds)")


class Neo4jStore:
    """A database in a Neo4j server (5.x), credentials from NEO4J_USERNAME / NEO4J_PASSWORD."""

    dialect: Dialect = "neo4j"

    def __init__(self, driver: Any, database: str | None, target: str):
        self._driver = driver
        self.database = database
        self.target = target

    @classmethod
    def connect(cls, uri: str, *, database: str | None, target: str) -> Neo4jStore:
        """Open a driver and check the server, the credentials and the database answer."""
        import neo4j
        from neo4j import exceptions as neo

        password = os.environ.get("NEO4J_PASSWORD")
        username = os.environ.get("NEO4J_USERNAME") or "neo4j"
        auth = neo4j.basic_auth(username, password) if password is not None else None
        try:
            driver = neo4j.GraphDatabase.driver(
                uri, auth=auth, connection_timeout=CONNECTION_TIMEOUT_S, max_transaction_retry_time=RETRY_TIME_S
            )
        except (neo.ConfigurationError, ValueError) as exc:
            # the driver's message repeats the URI, which is safe here: open_store refuses userinfo
            raise BadInput(f"bad Neo4j URI {target}: {one_line(exc)}") from exc
        store = cls(driver, database, target)
        try:
            store._call(lambda: store._check(), [Statement("connect", "RETURN 1")])
        except BaseException:
            driver.close()
            raise
        return store

    def _check(self) -> None:
        self._driver.verify_connectivity()
        with self._session() as session:
            session.run("RETURN 1").consume()

    def ensure_schema(self, relationship_types: Iterable[str] = ()) -> None:
        """Constraints and indexes, each `IF NOT EXISTS` on its own (schema and data cannot share a
        transaction), then, if any was new, a wait until they are online, before the first chunk."""
        statements = [
            *schema_statements(self.dialect),
            *(relationship_index(self.dialect, t) for t in sorted(set(relationship_types))),
        ]
        running = [Statement("schema", "")]

        def create() -> bool:
            added = False
            with self._session() as session:
                for statement in statements:
                    running[0] = statement
                    # one managed transaction each, so a transient error is retried like a chunk's
                    counters = session.execute_write(lambda tx, q=statement.query: tx.run(q).consume().counters)
                    added = added or bool(counters.constraints_added or counters.indexes_added)
                if added:
                    running[0] = AWAIT_INDEXES
                    session.run(AWAIT_INDEXES.query, {"seconds": INDEX_WAIT_S}).consume()
            return added

        self._call(create, running)

    def read(self, statement: Statement, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        def work(tx: Any) -> list[dict[str, Any]]:
            return [dict(record) for record in tx.run(statement.query, dict(parameters or {}))]

        with self._session() as session:
            rows: list[dict[str, Any]] = self._call(lambda: session.execute_read(work), [statement])
            return rows

    def write(self, batch: Sequence[tuple[Statement, Mapping[str, Any]]]) -> WriteCounts:
        return self.send(self.prepare(batch))

    def prepare(self, batch: Sequence[tuple[Statement, Mapping[str, Any]]]) -> list[tuple[Statement, dict[str, Any]]]:
        """The driver takes parameters as they are."""
        return [(statement, dict(parameters)) for statement, parameters in batch]

    def send(self, prepared: list[tuple[Statement, dict[str, Any]]]) -> WriteCounts:
        batch = prepared
        running = [Statement("begin", "")]  # the statement an error belongs to

        def work(tx: Any) -> WriteCounts:
            counts = WriteCounts()
            for statement, parameters in batch:
                running[0] = statement
                c = tx.run(statement.query, parameters).consume().counters
                counts += WriteCounts(
                    c.nodes_created, c.nodes_deleted, c.relationships_created, c.relationships_deleted
                )
            return counts

        with self._session() as session:
            counts: WriteCounts = self._call(lambda: session.execute_write(work), running)
            return counts

    def close(self) -> None:
        self._driver.close()

    def _session(self) -> Any:
        return self._driver.session(database=self.database)

    def _call(self, work: Any, running: list[Statement]) -> Any:
        """Run `work`, mapping driver errors to one line with the fix; `running[0]` names the statement it was on.

        Transient errors (deadlocks, leader switches, a dropped connection) never reach here
        unless they outlasted the retries: reads and writes go through the driver's managed
        transactions (execute_read / execute_write), which retry them with backoff for up to
        max_transaction_retry_time (30 s), as Neo4j recommends. Every batch is safe to run twice.
        """
        from neo4j import exceptions as neo

        at = self.target
        try:
            return work()
        except neo.AuthError as exc:
            raise BadInput(f"Neo4j at {at} rejected the credentials — set NEO4J_USERNAME and NEO4J_PASSWORD") from exc
        except neo.Forbidden as exc:
            raise BadInput(
                f"Neo4j at {at} refused statement {running[0].name}: {one_line(exc)} — give the NEO4J_USERNAME user "
                "write and schema rights on the database"
            ) from exc
        except neo.IncompleteCommit as exc:
            raise ServiceUnavailable(
                f"Neo4j at {at} lost the connection while committing {running[0].name}; whether it landed is unknown "
                "— run the command again (every chunk is safe to write twice)"
            ) from exc
        except (neo.ServiceUnavailable, neo.SessionExpired, neo.DatabaseUnavailable, OSError) as exc:
            raise ServiceUnavailable(
                f"Neo4j at {at} is unreachable ({one_line(exc)}) — start it or fix --graph; a commit resumes where it "
                "stopped"
            ) from exc
        except neo.TransientError as exc:
            raise ServiceUnavailable(
                f"Neo4j at {at} kept failing statement {running[0].name} with {exc.code} after retrying for "
                f"{RETRY_TIME_S:.0f} s — run the command again (a commit resumes where it stopped)"
            ) from exc
        except neo.Neo4jError as exc:
            code = exc.code or ""
            if code.endswith("DatabaseNotFound"):
                raise BadInput(
                    f"Neo4j at {at} has no database {self.database!r} — create it, or leave out --database"
                ) from exc
            if code.endswith("IndexAlreadyExists") or code.endswith("ConstraintAlreadyExists"):
                raise BadInput(
                    f"Neo4j at {at} could not create {running[0].name}: {one_line(exc)} — drop that index or "
                    "constraint (SHOW INDEXES; DROP INDEX name), extractor creates its own"
                ) from exc
            raise ExtractorError(f"Neo4j at {at} failed statement {running[0].name}: {one_line(exc)}") from exc


def one_line(exc: BaseException) -> str:
    """The error's message on one line (the driver's span several)."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())
