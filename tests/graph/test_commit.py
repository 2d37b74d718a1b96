"""Commit and rollback on a real FalkorDB and a real Neo4j: provenance, idempotence, exact rollback, crash-resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from extractor.errors import BadInput
from extractor.graph import GraphVocabulary, commit_job, dump_graph, rollback_job
from extractor.graph.store import GraphStore
from extractor.storage import read_json
from tests.graph.helpers import VOCABULARY, Interrupted, clear, doc, job_j, job_k, many_docs, stop_after

pytestmark = pytest.mark.graph
REPO = Path(__file__).resolve().parents[2]


def commit(store: GraphStore, job: str, docs, tmp_path: Path, run: str = "run", **kwargs):
    """commit_job with its log in `tmp_path/run/job`: another `run` is another commit of the job."""
    return commit_job(store, job, docs, log_path=log_of(tmp_path, job, run), vocabulary=VOCABULARY, **kwargs)


def log_of(tmp_path: Path, job: str, run: str = "run") -> Path:
    return tmp_path / run / job / "commit.json"


def dump_of(store: GraphStore, tmp_path: Path, *jobs: tuple[str, list], **kwargs) -> list[dict]:
    """The dump of a graph holding only `jobs` (committed into the cleared store, which is cleared again)."""
    clear(store)
    for job, docs in jobs:
        commit(store, job, docs, tmp_path, run="expected", **kwargs)
    dump = dump_graph(store)
    clear(store)
    return dump


def nodes(dump: list[dict], label: str) -> dict[str, dict]:
    return {
        item["properties"].get("key") or item["properties"]["doc_id"]: item
        for item in dump
        if item["kind"] == "node" and label in item["labels"]
    }


def relationships(dump: list[dict], type_: str) -> list[tuple[str, str, dict]]:
    ends = lambda node: node["properties"].get("key") or node["properties"]["doc_id"]  # noqa: E731
    return sorted(
        (ends(item["source"]), ends(item["target"]), item["properties"])
        for item in dump
        if item["kind"] == "relationship" and item["type"] == type_
    )


def test_commit_writes_documents_entities_mentions_and_relations_with_provenance(graph_store, tmp_path):
    summary = commit(graph_store, "J", job_j(), tmp_path)
    assert (summary.documents, summary.entities, summary.mentions, summary.relationships) == (2, 4, 5, 2)
    assert (summary.chunks, summary.resumed_chunks) == (1, 0)

    dump = dump_graph(graph_store)
    documents = nodes(dump, "Document")
    assert documents["d1"]["properties"] == {
        "doc_id": "d1", "sha256": "sha-d1", "path": "docs/d1.txt", "title": "Title d1", "jobs": ["J"],
        "sha256s": ["sha-d1"], "paths": ["docs/d1.txt"], "titles": ["Title d1"],
    }  # fmt: skip
    entities = nodes(dump, "Entity")
    assert entities["PERSON:ada lovelace"] == {
        "kind": "node",
        "labels": ["Entity", "PERSON"],
        "properties": {
            "key": "PERSON:ada lovelace",
            "name": "Ada Lovelace",
            "type": "PERSON",
            "jobs": ["J"],
            "names": ["Ada Lovelace"],
        },
    }
    assert entities["ORGANIZATION:analytical society"]["labels"] == ["Entity", "ORGANIZATION"]
    assert relationships(dump, "MENTIONED_IN") == [
        ("LOCATION:london", "d2", {"job": "J", "name": "London", "span": [10, 16]}),
        ("ORGANIZATION:analytical society", "d1", {"job": "J", "name": "Analytical Society", "span": [10, 28]}),
        ("PERSON:ada lovelace", "d1", {"job": "J", "name": "Ada Lovelace", "span": [0, 12]}),
        # a relation end the document did not list as an entity: a mention without a span
        ("PERSON:ada lovelace", "d2", {"job": "J", "name": "Ada Lovelace"}),
        ("PERSON:charles babbage", "d2", {"job": "J", "name": "Charles Babbage", "span": [0, 15]}),
    ]
    assert relationships(dump, "WORKS_FOR") == [
        ("PERSON:ada lovelace", "ORGANIZATION:analytical society",
         {"job": "J", "doc_id": "d1", "evidence": "Ada worked for the Society"}),
    ]  # fmt: skip
    # "knew" is not in the allow-list: the fallback type, the model's type kept as a value
    assert relationships(dump, "RELATED_TO") == [
        ("PERSON:charles babbage", "PERSON:ada lovelace",
         {"job": "J", "doc_id": "d2", "evidence": "Babbage knew Ada", "original_type": "knew"}),
    ]  # fmt: skip


def test_shared_nodes_list_every_contributing_job(graph_store, tmp_path):
    commit(graph_store, "J", job_j(), tmp_path)
    commit(graph_store, "K", job_k(), tmp_path)
    dump = dump_graph(graph_store)
    entities = nodes(dump, "Entity")
    babbage = entities["PERSON:charles babbage"]["properties"]
    assert babbage["jobs"] == ["J", "K"] and babbage["names"] == ["Charles Babbage", "charles babbage"]
    assert babbage["name"] == "Charles Babbage"  # the smallest surface form, whichever job came first
    d2 = nodes(dump, "Document")["d2"]["properties"]
    assert d2["jobs"] == ["J", "K"] and d2["paths"] == ["docs/d2.txt", "elsewhere/d2.txt"]
    assert d2["path"] == "elsewhere/d2.txt"  # the latest job's view


def test_second_commit_changes_nothing(graph_store, tmp_path):
    first = commit(graph_store, "J", many_docs(12), tmp_path, chunk_size=5)
    before = dump_graph(graph_store)
    second = commit(graph_store, "J", many_docs(12), tmp_path, chunk_size=5)
    assert (first.chunks, first.resumed_chunks) == (3, 0)
    assert (second.chunks, second.resumed_chunks) == (3, 3)
    assert dump_graph(graph_store) == before
    # even without its commit log the graph does not change: every write is a MERGE
    (log_of(tmp_path, "J")).unlink()
    third = commit(graph_store, "J", list(reversed(many_docs(12))), tmp_path, chunk_size=5)
    assert (third.resumed_chunks, third.nodes_created, third.relationships_created) == (0, 0, 0)
    assert dump_graph(graph_store) == before


def test_commit_log_records_each_chunk(graph_store, tmp_path):
    seen: list[int] = []
    commit(graph_store, "J", many_docs(7), tmp_path, chunk_size=3, progress=seen.append)
    assert seen == [3, 3, 1]
    log = read_json(log_of(tmp_path, "J"))
    assert log["format"] == "extractor.commit/1" and log["job_id"] == "J"
    record = log["targets"][graph_store.target]
    assert record["state"] == "committed" and record["chunk_size"] == 3 and record["chunks_planned"] == 3
    assert [(c["index"], c["documents"], c["first_doc_id"]) for c in record["chunks"]] == [
        (0, 3, "doc0000"), (1, 3, "doc0003"), (2, 1, "doc0006"),
    ]  # fmt: skip


def test_rollback_of_a_job_sharing_entities_leaves_exactly_the_other_job(graph_store, tmp_path):
    expected = dump_of(graph_store, tmp_path, ("K", job_k()))
    commit(graph_store, "J", job_j(), tmp_path)
    commit(graph_store, "K", job_k(), tmp_path)

    summary = rollback_job(graph_store, "J", log_path=log_of(tmp_path, "J"))
    assert summary.documents == 2
    assert dump_graph(graph_store) == expected
    record = read_json(log_of(tmp_path, "J"))["targets"][graph_store.target]
    assert record["state"] == "rolled_back"
    assert rollback_job(graph_store, "J", log_path=None).documents == 0  # a second rollback finds nothing


def test_rollback_of_the_first_job_restores_what_the_second_saw(graph_store, tmp_path):
    expected = dump_of(graph_store, tmp_path, ("K", job_k()))
    commit(graph_store, "K", job_k(), tmp_path)
    commit(graph_store, "J", job_j(), tmp_path)
    rollback_job(graph_store, "J", log_path=None)
    assert dump_graph(graph_store) == expected


def test_commit_after_rollback_writes_the_job_again(graph_store, tmp_path):
    commit(graph_store, "J", job_j(), tmp_path)
    committed = dump_graph(graph_store)
    rollback_job(graph_store, "J", log_path=log_of(tmp_path, "J"))
    assert dump_graph(graph_store) == []
    again = commit(graph_store, "J", job_j(), tmp_path)
    assert again.resumed_chunks == 0
    assert dump_graph(graph_store) == committed


def test_rollback_of_a_partially_committed_job(graph_store, tmp_path):
    expected = dump_of(graph_store, tmp_path, ("K", many_docs(6)), chunk_size=2)
    commit(graph_store, "K", many_docs(6), tmp_path, chunk_size=2)
    with pytest.raises(Interrupted):
        commit(graph_store, "J", many_docs(9)[3:], tmp_path, chunk_size=2, progress=stop_after(2))
    summary = rollback_job(graph_store, "J", log_path=None)
    assert summary.documents == 4
    assert dump_graph(graph_store) == expected


def test_changed_documents_for_a_committed_job_are_refused(graph_store, tmp_path):
    commit(graph_store, "J", job_j(), tmp_path)
    with pytest.raises(BadInput, match=r"commit\.json: job J was committed to .* roll it back first"):
        commit(graph_store, "J", job_k(), tmp_path)


class Recording:
    """The store, with the names of the statements its rollback writes recorded, and a send that may fail once
    landed."""

    def __init__(self, store: GraphStore, fail_after_sends: int | None = None):
        self.store = store
        self.written: list[str] = []
        self.sends = 0
        self.fail_after_sends = fail_after_sends

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def write(self, batch):
        self.written += [statement.name for statement, _ in batch]
        return self.store.write(batch)

    def send(self, prepared):
        counts = self.store.send(prepared)
        self.sends += 1
        if self.sends == self.fail_after_sends:
            raise Interrupted  # the chunk landed, the process dies before commit.json records it
        return counts

    def rollback_types(self) -> set[str]:
        return {name.split(":", 1)[1] for name in self.written if name.startswith("rollback_relationships:")}


def test_rollback_sends_only_the_relationship_types_the_job_wrote(graph_store, tmp_path):
    expected = dump_of(graph_store, tmp_path, ("K", many_docs(6)))
    commit(graph_store, "K", many_docs(6), tmp_path)  # LOCATED_IN and RELATED_TO
    commit(graph_store, "J", job_j(), tmp_path)  # WORKS_FOR and RELATED_TO
    record = read_json(log_of(tmp_path, "J"))["targets"][graph_store.target]
    assert record["relationship_types"] == ["RELATED_TO", "WORKS_FOR"]

    recording = Recording(graph_store)
    summary = rollback_job(recording, "J", log_path=log_of(tmp_path, "J"))
    assert recording.rollback_types() == {"RELATED_TO", "WORKS_FOR"}
    assert (summary.documents, summary.relationships_deleted) == (2, 2 + 5)  # 2 relations, 5 mentions (Ada in d2 too)
    assert dump_graph(graph_store) == expected


def test_rollback_with_a_commit_log_from_before_the_type_list_sends_every_type(graph_store, tmp_path):
    expected = dump_of(graph_store, tmp_path, ("K", many_docs(6)))
    commit(graph_store, "K", many_docs(6), tmp_path)
    commit(graph_store, "J", job_j(), tmp_path)
    log_path = log_of(tmp_path, "J")
    log = read_json(log_path)
    del log["targets"][graph_store.target]["relationship_types"]  # as an earlier extractor wrote it
    log_path.write_bytes(orjson.dumps(log))

    recording = Recording(graph_store)
    rollback_job(recording, "J", log_path=log_path)
    assert recording.rollback_types() >= {"LOCATED_IN", "RELATED_TO", "WORKS_FOR"}  # every type in the graph
    assert dump_graph(graph_store) == expected
    # and without a commit log at all
    commit(graph_store, "J", job_j(), tmp_path, run="again")
    recording = Recording(graph_store)
    rollback_job(recording, "J", log_path=None)
    assert recording.rollback_types() >= {"LOCATED_IN", "RELATED_TO", "WORKS_FOR"}
    assert dump_graph(graph_store) == expected


def test_rollback_undoes_a_chunk_that_landed_before_the_log_recorded_it(graph_store, tmp_path):
    # one document a chunk: d1 writes WORKS_FOR, d2 only RELATED_TO, and d2's chunk is not recorded
    expected = dump_of(graph_store, tmp_path, ("K", many_docs(6)))
    commit(graph_store, "K", many_docs(6), tmp_path)
    with pytest.raises(Interrupted):
        commit(Recording(graph_store, fail_after_sends=2), "J", job_j(), tmp_path, chunk_size=1)
    record = read_json(log_of(tmp_path, "J"))["targets"][graph_store.target]
    assert len(record["chunks"]) == 1
    assert record["relationship_types"] == ["RELATED_TO", "WORKS_FOR"]  # written before each chunk was sent

    summary = rollback_job(graph_store, "J", log_path=log_of(tmp_path, "J"))
    assert summary.documents == 2
    assert dump_graph(graph_store) == expected


def test_a_commit_log_naming_a_type_outside_the_allow_list_falls_back_to_the_graphs_types(graph_store, tmp_path):
    commit(graph_store, "J", job_j(), tmp_path)
    log_path = log_of(tmp_path, "J")
    log = read_json(log_path)
    log["targets"][graph_store.target]["relationship_types"] = ["X]->() DETACH DELETE (n) //"]
    log_path.write_bytes(orjson.dumps(log))
    recording = Recording(graph_store)
    rollback_job(recording, "J", log_path=log_path)
    assert recording.rollback_types() >= {"RELATED_TO", "WORKS_FOR"}  # every type in the graph
    assert dump_graph(graph_store) == []


def test_a_document_given_twice_is_refused(graph_store, tmp_path):
    with pytest.raises(BadInput, match="document 'd1' is given twice"):
        commit(graph_store, "J", [*job_j(), job_j()[0]], tmp_path)
    assert dump_graph(graph_store) == []


# Killed from outside at a moment of the test's choosing, possibly inside a chunk's transaction
# (the CLI's own kill -9 test, in test_graph_cli.py, stops it right after a chunk landed).
CRASHING_COMMIT = """
import os, sys, time
from pathlib import Path
from extractor.graph import commit_job, open_store
from tests.graph.helpers import VOCABULARY, many_docs

data_dir = Path(os.environ.get("EXTRACTOR_DATA_DIR", "unused"))
with open_store(sys.argv[1], database=sys.argv[2] or None, data_dir=data_dir) as store:
    commit_job(store, "J", many_docs(40), log_path=Path(sys.argv[3]), vocabulary=VOCABULARY, chunk_size=4,
               progress=lambda n: time.sleep(0.15))
"""


def test_commit_killed_halfway_resumes_where_it_stopped(graph_target, graph_store, tmp_path):
    expected = dump_of(graph_store, tmp_path, ("J", many_docs(40)), chunk_size=4)
    log_path = log_of(tmp_path, "J")
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_COMMIT, graph_target.uri, graph_target.database or "", str(log_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if log_path.exists() and len(read_json(log_path)["targets"][graph_store.target]["chunks"]) >= 3:
                break
            assert child.poll() is None, "the committing process ended before it could be killed"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    landed = len(read_json(log_path)["targets"][graph_store.target]["chunks"])
    assert 3 <= landed < 10

    resumed = commit_job(graph_store, "J", many_docs(40), log_path=log_path, vocabulary=VOCABULARY, chunk_size=4)
    assert resumed.chunks == 10 and resumed.resumed_chunks == landed
    assert dump_graph(graph_store) == expected


def test_a_commit_log_from_before_the_one_version_convention_is_migrated_on_read(graph_store, tmp_path):
    """commit.json once said `"format_version": 1`; read_versioned's hook takes it, a newer format is refused."""
    from extractor.graph.commit import _read_log

    commit(graph_store, "J", many_docs(2), tmp_path, chunk_size=1)
    path = log_of(tmp_path, "J")
    log = read_json(path)
    legacy = {k: v for k, v in log.items() if k != "format"} | {"format_version": 1}
    path.write_bytes(orjson.dumps(legacy))
    migrated = _read_log(path, "J")
    assert migrated["format"] == "extractor.commit/1" and "format_version" not in migrated
    assert migrated["targets"] == log["targets"]
    path.write_bytes(orjson.dumps(log | {"format": "extractor.commit/9"}))
    with pytest.raises(BadInput, match=r"unknown commit format 'extractor.commit/9'.*upgrade extractor"):
        _read_log(path, "J")


def test_new_entities_get_their_label_and_an_unlabelled_one_gains_it_under_another_spec(graph_store, tmp_path):
    """New entities are created with their label (FalkorDB labels existing nodes slowly, see upsert_entities);
    an entity another job wrote under a spec without that label keeps its one node and gains the label."""
    bare = GraphVocabulary.from_types([], ["WORKS_FOR"])  # a spec whose types are no allowed label
    commit_job(
        graph_store,
        "J1",
        [doc("d1", [("Ada Lovelace", "PERSON")])],
        log_path=log_of(tmp_path, "J1", "run"),
        vocabulary=bare,
    )
    first = nodes(dump_graph(graph_store), "Entity")
    assert first["PERSON:ada lovelace"]["labels"] == ["Entity"]
    commit(graph_store, "J2", [doc("d2", [("Ada Lovelace", "PERSON"), ("Charles Babbage", "PERSON")])], tmp_path)
    after = nodes(dump_graph(graph_store), "Entity")
    assert sorted(after) == ["PERSON:ada lovelace", "PERSON:charles babbage"]  # one node per key, none doubled
    assert after["PERSON:ada lovelace"]["labels"] == ["Entity", "PERSON"]
    assert after["PERSON:ada lovelace"]["properties"]["jobs"] == ["J1", "J2"]
    assert after["PERSON:charles babbage"]["labels"] == ["Entity", "PERSON"]
    assert after["PERSON:charles babbage"]["properties"]["jobs"] == ["J2"]
