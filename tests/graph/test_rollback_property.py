"""The rollback property on a real FalkorDB and a real Neo4j: for any sequence of jobs sharing
entities, rolling back job J leaves the graph equal to the graph where J was never committed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extractor.graph.store import GraphStore
from tests.graph.helpers import assert_rollback_is_exact, job_sequences

pytestmark = pytest.mark.graph
EXAMPLES = given(sequence=job_sequences(), chunk_size=st.integers(1, 3), partial=st.booleans())


def check(store: GraphStore, sequence, chunk_size: int, partial: bool) -> None:
    # The graph is cleared at the start of every example, and each example logs to its own temp dir.
    jobs, rolled = sequence
    with tempfile.TemporaryDirectory() as log_dir:
        assert_rollback_is_exact(store, jobs, rolled, chunk_size=chunk_size, partial=partial, log_dir=Path(log_dir))


@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@EXAMPLES
def test_rollback_leaves_the_graph_of_the_other_jobs_on_falkordb(falkordb_store, sequence, chunk_size, partial):
    check(falkordb_store, sequence, chunk_size, partial)


# Fewer examples: every Neo4j transaction is a round trip and a log flush (about 13 ms here, against
# FalkorDB's 1 ms), and the same statements run on both; the FalkorDB run explores the space.
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@EXAMPLES
def test_rollback_leaves_the_graph_of_the_other_jobs_on_neo4j(neo4j_store, sequence, chunk_size, partial):
    check(neo4j_store, sequence, chunk_size, partial)
