"""The test suite's own Neo4j (tests/neo4j_server.py): a start that fails shows the logs, and without
Java or Maven the Neo4j tests skip saying which is missing — or fail, with the fix, under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.neo4j_server import JVM_OPTIONS, Neo4jServer, missing_tools

REPO = Path(__file__).resolve().parents[2]
NO_JAVA = (
    "the Neo4j tests need Java 17+ (apt-get install openjdk-17-jdk-headless, or set JAVA_HOME)"
    " and Maven (apt-get install maven)"
)


def pytest_without_java(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """One Neo4j test in a child pytest whose PATH holds python and nothing else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "CI", "NEO4J_URI")}
    env["PATH"] = str(bin_dir)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         "tests/graph/test_neo4j.py::test_parameter_values_reach_neo4j_unchanged"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_without_java_or_maven_the_neo4j_tests_skip_and_say_which(tmp_path):
    result = pytest_without_java(tmp_path, ci=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout and NO_JAVA in result.stdout


def test_under_ci_a_missing_java_or_maven_fails_with_the_fix(tmp_path):
    result = pytest_without_java(tmp_path, ci="true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{NO_JAVA} — CI runs them, install it (or set NEO4J_URI to a Neo4j 5 server)" in result.stdout
    assert "1 error" in result.stdout


@pytest.mark.skipif(bool(missing_tools()), reason="needs Java and Maven")
def test_a_neo4j_that_cannot_start_says_why_with_its_log(tmp_path):
    server = Neo4jServer(tmp_path / "neo4j", jvm_options=(*JVM_OPTIONS, "-Xmx1m"))
    with pytest.raises(RuntimeError) as caught:
        server.start(timeout_s=120)
    message = str(caught.value)
    assert message.startswith("Neo4j exited at start with code 1; last lines:")
    assert "launcher.log" in message and "heap" in message.lower()
    assert server.password not in message
