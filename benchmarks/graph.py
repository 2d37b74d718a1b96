"""Graph benchmark: `commit` into the embedded FalkorDB (or Neo4j) against the ceiling of raw `UNWIND … MERGE`,
and rollback of one job in a graph of ten jobs against that job's commit.

    .venv/bin/python -m benchmarks.graph [--store falkordb|neo4j] [--docs 20000] [--entities 20]
        [--chunk-size 500] [--json]

`--store neo4j` starts the test suite's Neo4j Community (tests/neo4j_server.py: embedded, fetched
by Maven on first use, data on disk, 1 GiB page cache, 2 GiB heap) unless NEO4J_URI names a server
(NEO4J_USERNAME / NEO4J_PASSWORD; its database is cleared). Its ceiling is the same rows sent by
the plain `neo4j` driver, one auto-commit `session.run` per statement.

Documents are the shared Re-DocRED texts, cycled (doc i is Re-DocRED doc i mod 500 under its
own id), each with `--entities` entities (its own, topped up from the next documents) with
spans, and its gold relations (Wikidata property ids, so all take the fallback type). The
ceiling sends the same rows, chunk by chunk, as bare `UNWIND $rows … MERGE` statements from
a plain `falkordb` client: no provenance lists, no MULTI/EXEC, no commit log, rows built
before the clock starts. The commit is `commit_job` as the CLI runs it: sorting, row
building, provenance, one MULTI/EXEC per chunk, commit.json rewritten per chunk. Goals:
commit ≥ 0.5 × ceiling; rollback of one job among ten ≤ that job's commit time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.redocred import REDOCRED_PATH

REPO = Path(__file__).resolve().parent.parent
REDOCRED = REDOCRED_PATH  # tests/data/redocred-dev.json (MIT), or $REDOCRED_PATH
TYPES = {"PER": "PERSON", "ORG": "ORGANIZATION", "LOC": "LOCATION", "TIME": "DATE", "NUM": "NUMBER", "MISC": "OTHER"}


def load_documents(count: int, per_doc: int) -> list[Any]:
    """`count` CommitDocuments of `per_doc` entities each, from Re-DocRED."""
    from extractor.graph import CommitDocument, EntityMention, RelationFact

    source = json.loads(REDOCRED.read_text())
    parsed = [_parse(doc) for doc in source]
    docs = []
    for i in range(count):
        title, text_sha, entities, relations = parsed[i % len(parsed)]
        seen = {key for key, _ in entities}
        chosen = list(entities[:per_doc])
        step = 1
        while len(chosen) < per_doc:  # top up from the following documents
            for key, mention in parsed[(i + step) % len(parsed)][2]:
                if key not in seen and len(chosen) < per_doc:
                    seen.add(key)
                    chosen.append((key, EntityMention(mention.name, mention.type, None)))
            step += 1
        docs.append(
            CommitDocument(
                doc_id=f"{i:06d}-{text_sha[:9]}",
                sha256=text_sha,
                path=f"redocred/{i:06d}.txt",
                title=title,
                entities=tuple(mention for _, mention in chosen),
                relations=tuple(RelationFact(*r) for r in relations),
            )
        )
    return docs


def _parse(doc: dict[str, Any]) -> tuple[str, str, list[tuple[str, Any]], list[tuple[str, ...]]]:
    import hashlib

    from extractor.graph import EntityMention, entity_key

    starts, text_parts, at = [], [], 0
    for sent in doc["sents"]:
        row = []
        for token in sent:
            row.append(at)
            text_parts.append(token)
            at += len(token) + 1
        starts.append(row)
    text = " ".join(text_parts)
    entities: list[tuple[str, Any]] = []
    names = []
    seen = set()
    for vertex in doc["vertexSet"]:
        first = vertex[0]
        type_ = TYPES.get(first["type"], "OTHER")
        names.append((first["name"], type_))
        key = entity_key(type_, first["name"])
        if key in seen:
            continue
        seen.add(key)
        sent = doc["sents"][first["sent_id"]]
        start = starts[first["sent_id"]][first["pos"][0]]
        last = first["pos"][1] - 1
        end = starts[first["sent_id"]][last] + len(sent[last])
        entities.append((key, EntityMention(first["name"], type_, (start, end))))
    relations = []
    for label in doc.get("labels", []):
        (h, h_type), (t, t_type) = names[label["h"]], names[label["t"]]
        relations.append((h, h_type, label["r"], t, t_type, f"{h} {label['r']} {t}"))
    return doc["title"], hashlib.sha256(text.encode()).hexdigest(), entities, relations


def ceiling_batch(chunk: Any) -> list[tuple[str, dict[str, Any]]]:
    """The chunk's rows as bare UNWIND … MERGE statements: the same writes without provenance."""
    raw = []
    for statement, parameters in chunk.batch:
        kind, _, name = statement.name.partition(":")
        rows = {"rows": parameters["rows"]}
        if kind == "upsert_documents":
            query = """UNWIND $rows AS row MERGE (d:Document {doc_id: row.doc_id})
SET d.sha256 = row.sha256, d.path = row.path, d.title = row.title"""
        elif kind == "upsert_entities":
            label = f"e:{name}, " if name else ""
            query = f"""UNWIND $rows AS row MERGE (e:Entity {{key: row.key}})
SET {label}e.type = row.type, e.name = row.mentions[0].name
WITH e, row UNWIND row.mentions AS mention
MATCH (d:Document {{doc_id: mention.doc_id}})
MERGE (e)-[m:MENTIONED_IN]->(d) SET m.name = mention.name, m.span = mention.span"""
        else:
            extra = ", original_type: row.original_type" if kind == "merge_fallback_relationships" else ""
            query = f"""UNWIND $rows AS row MATCH (a:Entity {{key: row.source}}) MATCH (b:Entity {{key: row.target}})
MERGE (a)-[r:{name} {{doc_id: row.doc_id, evidence: row.evidence{extra}}}]->(b)"""
        raw.append((query, rows))
    return raw


def _measure(
    args: argparse.Namespace,
    tmp: Path,
    docs: list[Any],
    vocabulary: Any,
    result: dict[str, Any],
    store: Any,
    send_bare: Any,
    clear: Any,
) -> tuple[list[float], int, Any]:
    """Ceiling, commit, then ten jobs and the rollback of one, on `store(name)` graphs (cleared between)."""
    from extractor.graph import commit_job, rollback_job
    from extractor.graph.cypher import Statement

    started = time.perf_counter()
    send_bare()
    ceiling_s = time.perf_counter() - started
    clear("ceiling")

    committed = store("commit")
    started = time.perf_counter()
    summary = commit_job(
        committed, "bench", docs, log_path=tmp / "commit.json", vocabulary=vocabulary, chunk_size=args.chunk_size
    )
    commit_s = time.perf_counter() - started
    committed.close()
    clear("commit")
    result["ceiling_s"] = round(ceiling_s, 2)
    result["commit_s"] = round(commit_s, 2)
    result["ceiling_docs_per_s"] = round(len(docs) / ceiling_s)
    result["commit_docs_per_s"] = round(len(docs) / commit_s)
    result["commit_vs_ceiling"] = round(ceiling_s / commit_s, 3)
    result["graph_entities"] = summary.entities

    # rollback: ten jobs over slices of the same documents (entities shared across all)
    ten = store("ten_jobs")
    per_job = -(-len(docs) // args.jobs)
    commit_times = []
    for j in range(args.jobs):
        started = time.perf_counter()
        commit_job(
            ten,
            f"job{j}",
            docs[j * per_job : (j + 1) * per_job],
            log_path=tmp / f"job{j}.json",
            vocabulary=vocabulary,
            chunk_size=args.chunk_size,
        )
        commit_times.append(time.perf_counter() - started)
    rolled = args.jobs // 2
    # the relationship types the job's commit.json records: one rollback statement each, per chunk
    record = json.loads((tmp / f"job{rolled}.json").read_text())["targets"][ten.target]
    result["rollback_relationship_types"] = record["relationship_types"]
    started = time.perf_counter()
    rollback = rollback_job(ten, f"job{rolled}", log_path=tmp / f"job{rolled}.json")
    rollback_s = time.perf_counter() - started
    job = {"job": f"job{rolled}"}
    left = ten.read(Statement("left_nodes", "MATCH (n) WHERE $job IN n.jobs RETURN count(n) AS n"), job)[0]["n"]
    left += ten.read(Statement("left_relationships", "MATCH ()-[r]->() WHERE r.job = $job RETURN count(r) AS n"), job)[
        0
    ]["n"]
    ten.close()
    clear("ten_jobs")
    result["ten_jobs_documents_per_job"] = per_job
    result["rolled_back_job_commit_s"] = round(commit_times[rolled], 2)
    result["rollback_s"] = round(rollback_s, 2)
    result["rollback_vs_commit"] = round(rollback_s / commit_times[rolled], 3)
    result["rollback_nodes_deleted"] = rollback.nodes_deleted
    result["rollback_relationships_deleted"] = rollback.relationships_deleted
    result["job_left_after_rollback"] = left
    return commit_times, rolled, rollback


def _falkordb(
    args: argparse.Namespace, tmp: Path, docs: list[Any], chunks: list[Any], vocabulary: Any, result: dict[str, Any]
):
    from falkordb import FalkorDB

    from extractor.graph.embedded import EmbeddedFalkorDB
    from extractor.graph.falkordb_store import FalkorStore

    with EmbeddedFalkorDB(tmp / "falkordb") as server:

        def store(graph: str) -> FalkorStore:
            s = FalkorStore.connect(target=f"bench {graph}", graph=graph, unix_socket_path=str(server.socket_path))
            s.ensure_schema()
            return s

        def send_bare() -> None:
            for batch in chunks:
                for query, parameters in batch:
                    bare.query(query, parameters)

        # ceiling: a bare client, the same rows, nothing else
        store("ceiling").close()  # same indexes as the commit's graph
        bare = FalkorDB(unix_socket_path=str(server.socket_path)).select_graph("ceiling")
        # each phase has a graph of its own
        return _measure(args, tmp, docs, vocabulary, result, store, send_bare, lambda graph: None)


def _neo4j(
    args: argparse.Namespace, tmp: Path, docs: list[Any], chunks: list[Any], vocabulary: Any, result: dict[str, Any]
):
    import contextlib
    import os

    import neo4j

    from extractor.graph.neo4j_store import Neo4jStore

    with contextlib.ExitStack() as stack:
        if os.environ.get("NEO4J_URI"):
            uri, database = os.environ["NEO4J_URI"], os.environ.get("NEO4J_DATABASE")
            auth = (os.environ.get("NEO4J_USERNAME") or "neo4j", os.environ.get("NEO4J_PASSWORD", ""))
        else:
            sys.path.insert(0, str(REPO))
            from tests.neo4j_server import JVM_OPTIONS, Neo4jServer, neo4j_version

            options = (*(o for o in JVM_OPTIONS if not o.startswith("-Xm")), "-Xms2g", "-Xmx2g")
            server = stack.enter_context(Neo4jServer(tmp / "neo4j", jvm_options=options, pagecache_mb=1024))
            uri, database, auth = server.uri, None, (server.username, server.password)
            os.environ["NEO4J_USERNAME"], os.environ["NEO4J_PASSWORD"] = auth
            result["neo4j"] = f"{neo4j_version()} embedded, data on disk"
        driver = stack.enter_context(neo4j.GraphDatabase.driver(uri, auth=auth))
        result["neo4j_server"] = driver.get_server_info().agent

        def clear(_graph: str) -> None:
            # relationships first: DETACH DELETE of 5,000 dense entity nodes at once outgrew
            # Neo4j's transaction memory pool at 20,000 documents
            with driver.session(database=database) as session:
                session.run("MATCH ()-[r]->() CALL (r) { DELETE r } IN TRANSACTIONS OF 10000 ROWS").consume()
                session.run("MATCH (n) CALL (n) { DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()

        def store(graph: str) -> Neo4jStore:
            s = Neo4jStore.connect(uri, database=database, target=f"bench {uri}")
            s.ensure_schema()
            return s

        def send_bare() -> None:
            with driver.session(database=database) as session:
                for batch in chunks:
                    for query, parameters in batch:
                        session.run(query, parameters).consume()

        clear("before")
        store("ceiling").close()  # the same constraints and indexes as the commit's
        return _measure(args, tmp, docs, vocabulary, result, store, send_bare, clear)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["falkordb", "neo4j"], default="falkordb")
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--entities", type=int, default=20)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=10, help="jobs in the rollback graph")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)

    from extractor.graph import GraphVocabulary
    from extractor.graph.batches import iter_chunks, sorted_documents
    from extractor.spec.schema import DEFAULT_SPEC_PATH, load_spec

    spec = load_spec(DEFAULT_SPEC_PATH)
    vocabulary = GraphVocabulary.from_types(spec.entity_types(), spec.relation_types())

    docs = load_documents(args.docs, args.entities)
    ordered = sorted_documents(docs)
    chunks = [ceiling_batch(chunk) for chunk in iter_chunks(ordered, "ceiling", vocabulary, args.chunk_size)]
    mentions = sum(len(d.entities) for d in docs)
    relations = sum(len(d.relations) for d in docs)
    result: dict[str, Any] = {
        "store": args.store,
        "documents": len(docs),
        "entities_per_document": args.entities,
        "mentions": mentions,
        "relations": relations,
        "chunk_size": args.chunk_size,
    }
    with tempfile.TemporaryDirectory(prefix="graph-bench-") as tmp:
        run = _falkordb if args.store == "falkordb" else _neo4j
        commit_times, rolled, rollback = run(args, Path(tmp), docs, chunks, vocabulary, result)
    ceiling_s, commit_s, rollback_s, per_job = (
        result["ceiling_s"],
        result["commit_s"],
        result["rollback_s"],
        result["ten_jobs_documents_per_job"],
    )
    left = result["job_left_after_rollback"]

    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.store}: {len(docs):,} documents × {args.entities} entities "
            f"({mentions:,} mentions, {relations:,} relations), chunks of {args.chunk_size}"
        )
        print(f"  ceiling (bare UNWIND … MERGE): {ceiling_s:8.2f} s  {result['ceiling_docs_per_s']:>7,} docs/s")
        print(
            f"  commit_job:                    {commit_s:8.2f} s  {result['commit_docs_per_s']:>7,} docs/s  "
            f"= {result['commit_vs_ceiling']:.2f} × ceiling (goal ≥ 0.5)"
        )
        print(f"{args.jobs} jobs of {per_job:,} documents sharing entities; rolling back job{rolled}:")
        print(
            f"  its commit: {commit_times[rolled]:.2f} s   rollback: {rollback_s:.2f} s  "
            f"= {result['rollback_vs_commit']:.2f} × commit (goal ≤ 1)"
        )
        print(
            "  relationship types the job wrote (one rollback statement each): "
            f"{', '.join(result['rollback_relationship_types'])}"
        )
        print(
            f"  deleted {rollback.nodes_deleted:,} nodes and {rollback.relationships_deleted:,} relationships; "
            f"job left in graph: {left}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
