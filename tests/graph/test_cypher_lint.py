"""Neo4j's own Cypher linter (@neo4j-cypher/language-support) finds nothing in any Neo4j statement."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from extractor.graph.cypher import iter_statements
from extractor.graph.model import DOCUMENT_LABEL, ENTITY_LABEL, MENTION_TYPE, GraphVocabulary
from tests.graph.helpers import VOCABULARY

LINT_DIR = Path(__file__).resolve().parents[1] / "cypher_lint"

# Every property the model writes; the linter warns about any other it sees read.
MODEL_PROPERTIES = [
    "doc_id", "sha256", "path", "title", "jobs", "sha256s", "paths", "titles",  # Document
    "key", "name", "type",  # Entity (+ jobs)
    "job", "span", "evidence", "original_type",  # relationships (+ doc_id, name)
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node and npm are needed to run Neo4j's Cypher linter",
)


@pytest.fixture(scope="module")
def linter() -> Path:
    """tests/cypher_lint with its pinned packages installed (npm ci, once)."""
    with open(LINT_DIR / "package.json") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test runs share the folder
        if not (LINT_DIR / "node_modules" / "@neo4j-cypher" / "language-support").exists():
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=LINT_DIR,
                check=True,
                timeout=300,
                capture_output=True,
            )
    return LINT_DIR / "lint.mjs"


def row_keys(value: Any) -> set[str]:
    """Field names of the maps in the parameters: the linter cannot tell `row.key` from a node property."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in row_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in row_keys(v)}
    return set()


def lint(linter: Path, vocabulary: GraphVocabulary, statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    schema = {
        "labels": sorted({ENTITY_LABEL, DOCUMENT_LABEL, *vocabulary.entity_labels}),
        "relationshipTypes": sorted({MENTION_TYPE, *vocabulary.all_relationship_types}),
        "propertyKeys": sorted(
            set(MODEL_PROPERTIES) | {k for s in statements for p in s["parameters"].values() for k in row_keys(p)}
        ),
    }
    result = subprocess.run(
        ["node", str(linter)],
        input=json.dumps({"schema": schema, "statements": statements}),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "vocabulary",
    [VOCABULARY, GraphVocabulary(frozenset(), frozenset(), "LINKED_TO")],
    ids=["default-spec", "empty-allow-list"],
)
def test_every_neo4j_statement_lints_clean(linter, vocabulary):
    statements = list(iter_statements("neo4j", vocabulary))
    results = lint(linter, vocabulary, statements)
    assert [r["name"] for r in results] == [s["name"] for s in statements]
    problems = {r["name"]: r["diagnostics"] for r in results if r["diagnostics"]}
    assert problems == {}


def test_the_linter_does_report_mistakes(linter):
    broken = [
        {
            "name": "typo",
            "query": "UNWIND $rows AS row MERGE (d:Document {doc_id: row.doc_id}) RETRUN d",
            "parameters": {"rows": []},
        },
        {"name": "undeclared", "query": "MATCH (d:Document) WHERE d.doc_id = $nope RETURN d", "parameters": {}},
        {"name": "property", "query": "MATCH (d:Document) RETURN d.pahts", "parameters": {}},
        {"name": "function", "query": "MATCH (d:Document) RETURN lastt(d.paths)", "parameters": {}},
    ]
    results = lint(linter, VOCABULARY, broken)
    assert all(r["diagnostics"] for r in results), results
