"""The Neo4j store: the official driver, each write batch one managed write transaction."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from extractor.errors import BadInput, ExtractorError, ServiceUnavailable
from extractor.graph.cypher import Dialect, Statement, relationship_index, schema_statements
from extractor.graph.store import WriteCounts

CONNECTION_TIMEOUT_S = 15.0


class Neo4jStore:
    """A database in a Neo4j server (5.x), credentials from NEO4J_USERNAME / NEO4J_PASSWORD."""

    dialect: Dialect = "neo4j"

    def __init__(self, driver: Any, database: str | None, target: str):
        self._driver = driver
        self.database = database
        self.target = target

    @classmethod
    def connect(cls, uri: str, *, database: str | None, target: str) -> "Neo4jStore":
        """Open a driver and check the server, the credentials and the database answer."""
        import neo4j
        from neo4j import exceptions as neo

        password = os.environ.get("NEO4J_PASSWORD")
        username = os.environ.get("NEO4J_USERNAME") or "neo4j"
        auth = neo4j.basic_auth(username, password) if password is not None else None
        try:
            driver = neo4j.GraphDatabase.driver(uri, auth=auth, connection_timeout=CONNECTION_TIMEOUT_S)
        except (neo.ConfigurationError, ValueError) as exc:
            # the driver's message repeats the URI, which is safe here: open_store refuses userinfo
            raise BadInput(f"bad Neo4j URI {target}: {exc}") from exc
        store = cls(driver, database, target)
        try:
            driver.verify_connectivity()
            with driver.session(database=database) as session:
                session.run("RETURN 1").consume()
        except neo.AuthError as exc:
            driver.close()
            raise BadInput(
                f"Neo4j at {target} rejected the credentials — set NEO4J_USERNAME and NEO4J_PASSWORD"
            ) from exc
        except (neo.ServiceUnavailable, neo.SessionExpired, OSError) as exc:
            driver.close()
            raise ServiceUnavailable(f"Neo4j at {target} is unreachable: {exc}") from exc
        except neo.ClientError as exc:
            driver.close()
            if "DatabaseNotFound" in (exc.code or ""):
                raise BadInput(
                    f"Neo4j at {target} has no database {database!r} — create it, or leave out --database"
                ) from exc
            raise ExtractorError(f"Neo4j at {target}: {exc.message}") from exc
        return store

    def ensure_schema(self, relationship_types: Iterable[str] = ()) -> None:
        # schema statements cannot share a transaction with data writes: run each on its own
        statements = [
            *schema_statements(self.dialect),
            *(relationship_index(self.dialect, t) for t in sorted(set(relationship_types))),
        ]
        with self._session() as session:
            for statement in statements:
                self._call(lambda: session.run(statement.query).consume(), [statement])

    def read(self, statement: Statement, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        def work(tx: Any) -> list[dict[str, Any]]:
            return [dict(record) for record in tx.run(statement.query, dict(parameters or {}))]

        with self._session() as session:
            return self._call(lambda: session.execute_read(work), [statement])

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
                counts += WriteCounts(c.nodes_created, c.nodes_deleted, c.relationships_created, c.relationships_deleted)
            return counts

        with self._session() as session:
            return self._call(lambda: session.execute_write(work), running)

    def close(self) -> None:
        self._driver.close()

    def _session(self) -> Any:
        return self._driver.session(database=self.database)

    def _call(self, work: Any, running: list[Statement]) -> Any:
        """Run `work`, mapping driver errors to ours; `running[0]` names the statement it was on."""
        from neo4j import exceptions as neo

        try:
            return work()
        except neo.AuthError as exc:
            raise BadInput(f"Neo4j at {self.target} rejected the credentials — set NEO4J_USERNAME and NEO4J_PASSWORD") from exc
        except (neo.ServiceUnavailable, neo.SessionExpired, OSError) as exc:
            raise ServiceUnavailable(f"Neo4j at {self.target} is unreachable: {exc}") from exc
        except neo.Neo4jError as exc:
            raise ExtractorError(f"Neo4j at {self.target} failed statement {running[0].name}: {exc.message}") from exc
