"""The rollback property on a real FalkorDB: for any sequence of jobs sharing entities, rolling
back job J leaves the graph equal to the graph where J was never committed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.graph_fixtures import assert_rollback_is_exact, falkordb_server, graph_store, job_sequences  # noqa: F401

pytestmark = pytest.mark.graph


# The graph is cleared at the start of every example, and each example logs to its own temp dir.
@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=job_sequences(), chunk_size=st.integers(1, 3), partial=st.booleans())
def test_rollback_leaves_the_graph_of_the_other_jobs(graph_store, sequence, chunk_size, partial):
    jobs, rolled = sequence
    with tempfile.TemporaryDirectory() as log_dir:
        assert_rollback_is_exact(graph_store, jobs, rolled, chunk_size=chunk_size, partial=partial, log_dir=Path(log_dir))
