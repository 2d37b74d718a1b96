"""`verify` through the CLI on real jobs: entity and relation verdicts, policies, leak attribution, --against."""

from __future__ import annotations

import random
import re
from pathlib import Path

import orjson
import pytest

from extractor.spec.schema import DEFAULT_SPEC_PATH, check_spec, load_spec
from extractor.verify.leaks import common_word
from extractor.verify.normalize import normalize
from tests.redocred import gold_answer, load_redocred, redocred_text
from tests.verify_fixtures import answer, by_path, entity, ingest, invoke, prepare, verify, write_docs

TEXTS = {
    "a.txt": "Ann Lee joined Microsoft in 1998. She moved to Zurich with her family and later worked for the "
    "International Organization for Standardization.\n",
    "b.txt": "Bob Stone founded Acme Corp in Paris in 2001. Acme Corp makes anvils.\n",
    "c.txt": "The river flows north through Springfield.\n",
}
EVIDENCE = "Ann Lee joined Microsoft in 1998"
ANSWERS = {
    "a.txt": answer(
        [
            ("Ann Lee", "PERSON"),
            ("MICROSOFT'S", "ORGANIZATION"),
            ("Zürich", "LOCATION"),
            ("Acme Corp", "ORGANIZATION"),
            ("Zorblax Quint", "PERSON"),
        ],
        [
            ("Ann Lee", "WORKS_FOR", "Microsoft", EVIDENCE),  # grounded
            ("Ann Lee", "LOCATED_IN", "Zürich", "She moved to Zurich"),  # fuzzy end
            ("Ann Lee", "WORKS_FOR", "Acme Corp", EVIDENCE),  # leaked end
            ("Ann Lee", "WORKS_FOR", "Seattle Corp", EVIDENCE),  # end is no entity, found nowhere
            (
                "Ann Lee",
                "WORKS_FOR",
                "International Organization for Standardization",
                EVIDENCE,
            ),  # in the text, not an entity
            ("Ann Lee", "MEMBER_OF", "Microsoft", "Bob Stone founded Acme Corp in Paris"),  # leaked evidence
            ("Ann Lee", "WORKS_FOR", "Microsoft", "Ann Lee was fired by Microsoft"),  # evidence nowhere
            ("Ann Lee", "PARENT_OF", "Zorblax Quint", EVIDENCE),  # ungrounded end
            ("Ann Lee", "LOCATED_IN", "Microsoft", "She moved to Zurich with the family"),  # fuzzy evidence
        ],
    ),
    "b.txt": answer(
        [("Bob Stone", "PERSON"), ("Acme Corp", "ORGANIZATION"), ("Paris", "LOCATION"), ("2001", "DATE")],
        [("Bob Stone", "FOUNDED_BY", "Acme Corp", "Bob Stone founded Acme Corp")],
    ),
    "c.txt": answer([("Springfield", "LOCATION"), ("Shelbyville", "LOCATION")]),
}


@pytest.fixture
def job(tmp_path: Path):
    return ingest(prepare(write_docs(tmp_path / "docs", TEXTS)), ANSWERS, tmp_path)


def doc_ids(job) -> dict[str, str]:
    return {d["path"]: d["doc_id"] for d in job.documents()}


def test_entities_get_a_verdict_a_span_into_the_text_and_their_sources(job) -> None:
    code, report = verify(job)
    assert code == 3
    a = by_path(report)["a.txt"]
    text = TEXTS["a.txt"]
    for name, verdict, surface in [
        ("Ann Lee", "grounded", "Ann Lee"),
        ("MICROSOFT'S", "grounded", "Microsoft"),
        ("Zürich", "fuzzy", "Zurich"),
    ]:
        found = entity(a, name)
        assert found["verdict"] == verdict
        assert text[slice(*found["span"])] == surface
        assert found["sources"] == []
    assert entity(a, "Acme Corp") == {
        "name": "Acme Corp",
        "type": "ORGANIZATION",
        "verdict": "leaked",
        "span": None,
        "sources": [doc_ids(job)["b.txt"]],
    }
    assert entity(a, "Zorblax Quint")["verdict"] == "ungrounded" and entity(a, "Zorblax Quint")["sources"] == []


def test_relation_verdicts(job) -> None:
    _, report = verify(job)
    relations = by_path(report)["a.txt"]["relations"]
    b = doc_ids(job)["b.txt"]
    assert [(r["verdict"], r["sources"]) for r in relations] == [
        ("grounded", []),
        ("fuzzy", []),
        ("leaked", [b]),
        ("ungrounded", []),
        ("ungrounded", []),
        ("leaked", [b]),
        ("ungrounded", []),
        ("ungrounded", []),
        ("fuzzy", []),
    ]
    first = relations[0]
    assert TEXTS["a.txt"][slice(*first["evidence_span"])] == EVIDENCE
    assert by_path(report)["b.txt"]["relations"][0]["verdict"] == "grounded"


def test_verify_json_keeps_the_documented_shape(job) -> None:
    _, report = verify(job)
    assert {"job_id", "summary", "documents"} <= report.keys()
    assert report["summary"] == {
        "documents": 3,
        "clean": 2,
        "quarantined": 1,
        "failed": 0,
        "entities": {"grounded": 7, "fuzzy": 1, "leaked": 1, "ungrounded": 2},
        "relations": {"grounded": 2, "fuzzy": 2, "leaked": 2, "ungrounded": 4},
    }
    for doc in report["documents"]:
        assert {"doc_id", "custom_id", "path", "status", "reasons", "entities", "relations"} <= doc.keys()
        for ent in doc["entities"]:
            assert set(ent) == {"name", "type", "verdict", "span", "sources"}
        for rel in doc["relations"]:
            assert {"source", "type", "target", "verdict"} <= rel.keys()
    assert [d["path"] for d in report["documents"]] == [d["path"] for d in job.documents()]  # manifest order


def test_default_policy_quarantines_leaks_and_drops_ungrounded(job) -> None:
    code, report = verify(job)
    docs = by_path(report)
    assert code == 3
    assert {p: d["status"] for p, d in docs.items()} == {"a.txt": "quarantined", "b.txt": "clean", "c.txt": "clean"}
    assert docs["a.txt"]["reasons"][0] == (
        f"leaked: 1 entity found only in other documents of the job: Acme Corp (in {doc_ids(job)['b.txt']})"
        " — document quarantined"
    )
    assert docs["c.txt"]["reasons"] == [
        "ungrounded: 1 entity found in no document: Shelbyville — dropped from the commit"
    ]
    assert report["policy"] == {"leaked": "quarantine", "ungrounded": "drop"}


@pytest.mark.parametrize(
    ("flags", "statuses", "code"),
    [
        (["--strict"], {"a.txt": "quarantined", "b.txt": "clean", "c.txt": "quarantined"}, 3),
        (["--leaked", "drop"], {"a.txt": "clean", "b.txt": "clean", "c.txt": "clean"}, 0),
        (
            ["--leaked", "drop", "--ungrounded", "quarantine"],
            {"a.txt": "quarantined", "b.txt": "clean", "c.txt": "quarantined"},
            3,
        ),
    ],
)
def test_policy_flags(job, flags: list[str], statuses: dict[str, str], code: int) -> None:
    got, report = verify(job, *flags)
    assert got == code
    assert {p: d["status"] for p, d in by_path(report).items()} == statuses
    assert report["summary"]["quarantined"] == list(statuses.values()).count("quarantined")


def test_bad_policy_flags_are_usage_errors(job) -> None:
    result = invoke("verify", job.id, "--leaked", "ignore")
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "Error: policy leaked: 'ignore' is not one of quarantine, drop — use quarantine or drop"
    )
    result = invoke("verify", job.id, "--strict", "--ungrounded", "drop")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --strict means --ungrounded quarantine — pass one or the other"


def spec_with_policy(tmp_path: Path, policy: object) -> Path:
    spec = orjson.loads(DEFAULT_SPEC_PATH.read_bytes())
    spec["policy"] = policy
    path = tmp_path / "spec.json"
    path.write_bytes(orjson.dumps(spec))
    return path


def test_spec_policy_applies_and_flags_override_it(tmp_path: Path) -> None:
    spec = spec_with_policy(tmp_path, {"leaked": "drop", "ungrounded": "quarantine"})
    job = ingest(prepare(write_docs(tmp_path / "docs", TEXTS), "--schema", str(spec)), ANSWERS, tmp_path)
    code, report = verify(job)
    assert report["policy"] == {"leaked": "drop", "ungrounded": "quarantine"}
    assert {p: d["status"] for p, d in by_path(report).items()} == {
        "a.txt": "quarantined",
        "b.txt": "clean",
        "c.txt": "quarantined",
    }
    assert by_path(report)["a.txt"]["reasons"][0].endswith("— dropped from the commit")  # the leak only drops
    code, report = verify(job, "--ungrounded", "drop", "--leaked", "quarantine")
    assert report["policy"] == {"leaked": "quarantine", "ungrounded": "drop"}
    assert code == 3 and {p: d["status"] for p, d in by_path(report).items()}["c.txt"] == "clean"


def test_spec_policy_is_checked_and_stays_out_of_the_request_hash(tmp_path: Path) -> None:
    base = orjson.loads(DEFAULT_SPEC_PATH.read_bytes())
    problems = check_spec({**base, "policy": {"leaked": "ignore", "typos": "drop"}})
    assert [(p.path, p.message) for p in problems] == [
        ("/policy/leaked", "must be 'quarantine' or 'drop'"),
        ("/policy/typos", 'unknown key — policy has only "leaked" and "ungrounded"'),
    ]
    assert [p.path for p in check_spec({**base, "policy": "strict"})] == ["/policy"]
    assert check_spec({**base, "policy": {"ungrounded": "quarantine"}}) == []
    with_policy = load_spec(spec_with_policy(tmp_path, {"ungrounded": "quarantine"}))
    assert with_policy.policy == {"ungrounded": "quarantine"}
    assert with_policy.sha256 == load_spec(DEFAULT_SPEC_PATH).sha256  # same requests, same custom_ids


def test_documents_without_an_answer_are_failed(tmp_path: Path) -> None:
    job = prepare(write_docs(tmp_path / "docs", TEXTS))
    job = ingest(job, {"b.txt": ANSWERS["b.txt"], "c.txt": ANSWERS["c.txt"]}, tmp_path, errors=("a.txt",))
    code, report = verify(job)
    a = by_path(report)["a.txt"]
    assert code == 0 and a["status"] == "failed" and a["reasons"][0].startswith("http_error: ")
    assert report["summary"]["failed"] == 1 and report["summary"]["clean"] == 2


def test_reverify_and_json_output(job) -> None:
    verify(job)
    result = invoke("verify", job.id, "--json", "--strict")
    assert result.exit_code == 3
    data = orjson.loads(result.stdout)
    assert data["job_id"] == job.id and data["summary"]["quarantined"] == 2
    assert data["policy"] == {"leaked": "quarantine", "ungrounded": "quarantine"}


def present(name: str, text: str) -> bool:
    """An independent check: the name's words, in order, as whole words of the text (case and spacing ignored)."""
    return f" {' '.join(name.casefold().split())} " in f" {' '.join(normalize(text).text.split())} "


def test_leaks_through_a_whole_job_are_attributed_to_documents_that_hold_them(tmp_path: Path) -> None:
    docs = load_redocred()[:12]
    texts = {f"{i:02d}.txt": redocred_text(doc) for i, doc in enumerate(docs)}
    gold = {name: gold_answer(doc) for name, doc in zip(texts, docs, strict=True)}
    answers = {name: gold_answer(doc) for name, doc in zip(texts, docs, strict=True)}
    rng = random.Random(6)
    planted: dict[str, tuple[str, str]] = {}  # file → (leaked name, the file it came from)
    names = list(texts)
    for i, name in enumerate(names):
        origin = names[(i + 1 + rng.randrange(len(names) - 1)) % len(names)]
        # a bare year or small number, or one of the language's commonest words alone ("Russian"), is no leak by
        # itself (verify/leaks.py): those are tested apart
        candidates = [
            e["name"]
            for e in gold[origin]["entities"]
            if not present(e["name"], texts[name])
            and not re.fullmatch(r"[\d,.]{1,5}", e["name"])
            and not (len(e["name"].split()) == 1 and common_word(e["name"], at_sentence_start=False))
        ]
        leak = rng.choice(candidates)
        answers[name]["entities"].append({"name": leak, "type": "OTHER"})
        planted[name] = (leak, origin)
    job = ingest(prepare(write_docs(tmp_path / "docs", texts)), answers, tmp_path)

    code, report = verify(job)

    ids = doc_ids(job)
    path_of = {doc_id: path for path, doc_id in ids.items()}
    assert code == 3
    for path, doc in by_path(report).items():
        leak, origin = planted[path]
        verdicts = {e["name"]: e for e in doc["entities"]}
        assert verdicts[leak]["verdict"] == "leaked", (path, leak)
        assert ids[origin] in verdicts[leak]["sources"]
        assert all(present(leak, texts[path_of[s]]) for s in verdicts[leak]["sources"])
        assert ids[path] not in verdicts[leak]["sources"]
        flagged = [
            e["name"] for e in doc["entities"] if e["verdict"] not in ("grounded", "fuzzy") and e["name"] != leak
        ]
        assert flagged == [], (path, flagged)
        assert doc["status"] == "quarantined"


def test_a_dangling_relation_end_is_a_leak_only_when_it_is_a_name(tmp_path: Path) -> None:
    # Weak models put the spec's own words or common nouns where a relation end belongs; another document using
    # the same word is no sign of a leak. A real name from another document still is.
    texts = {
        "a.txt": "Kyu Hyun Kim directed the film in Seoul.\n",
        "b.txt": "The location of the place was kept secret by the Bank of England on 14 May 1954.\n",
        "c.txt": "Min Ho Lee lives in Busan.\n",
    }
    answers = {
        "a.txt": answer(
            [("Kyu Hyun Kim", "PERSON"), ("Seoul", "LOCATION")],
            [
                ("", "MEMBER_OF", "LOCATION", "Kyu Hyun Kim directed the film"),
                ("place", "LOCATED_IN", "Seoul", "Kyu Hyun Kim directed the film in Seoul"),
                ("Kyu Hyun Kim", "MEMBER_OF", "member_of", "Kyu Hyun Kim directed the film"),
            ],
        ),
        "b.txt": answer([("Bank of England", "ORGANIZATION")]),
        "c.txt": answer(
            [("Min Ho Lee", "PERSON")],
            [
                ("Min Ho Lee", "WORKS_FOR", "Bank of England", "Min Ho Lee lives in Busan"),
                ("Min Ho Lee", "LOCATED_IN", "1954-05-14", "Min Ho Lee lives in Busan"),
            ],
        ),
    }
    job = ingest(prepare(write_docs(tmp_path / "docs", texts)), answers, tmp_path)

    code, report = verify(job)

    a, c = by_path(report)["a.txt"], by_path(report)["c.txt"]
    assert [(r["verdict"], r["sources"]) for r in a["relations"]] == [("ungrounded", [])] * 3
    assert a["status"] == "clean" and not any("leaked" in reason for reason in a["reasons"])
    b = doc_ids(job)["b.txt"]
    assert [(r["verdict"], r["sources"]) for r in c["relations"]] == [("leaked", [b]), ("leaked", [b])]
    assert c["status"] == "quarantined" and code == 3


def test_against_a_folder_or_a_job_finds_sources_outside_the_job(tmp_path: Path) -> None:
    outside = write_docs(tmp_path / "outside", {"d.txt": "Carol King sang in Dublin.\n"})
    texts = {"a.txt": TEXTS["a.txt"], "b.txt": TEXTS["b.txt"]}
    answers = {"a.txt": answer([("Ann Lee", "PERSON"), ("Carol King", "PERSON")]), "b.txt": ANSWERS["b.txt"]}
    job = ingest(prepare(write_docs(tmp_path / "docs", texts)), answers, tmp_path)

    code, report = verify(job)
    assert code == 0 and entity(by_path(report)["a.txt"], "Carol King")["verdict"] == "ungrounded"

    code, report = verify(job, "--against", str(outside))
    carol = entity(by_path(report)["a.txt"], "Carol King")
    assert code == 3 and carol["verdict"] == "leaked" and len(carol["sources"]) == 1
    assert report["against"] == [{"kind": "folder", "ref": str(outside)}]
    assert report["external_sources"][carol["sources"][0]] == {"path": "d.txt", "kind": "folder", "ref": str(outside)}

    other = prepare(outside)
    code, report = verify(job, "--against", other.id)
    assert code == 3
    assert entity(by_path(report)["a.txt"], "Carol King")["sources"] == [other.documents()[0]["doc_id"]]
    assert report["against"] == [{"kind": "job", "ref": other.id}]


def test_against_something_missing_is_a_usage_error(job, tmp_path: Path) -> None:
    result = invoke("verify", job.id, "--against", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: --against {tmp_path / 'nowhere'}: no such folder, and no job '{tmp_path / 'nowhere'}' in "
        f"{tmp_path / 'jobs'} — pass a folder of documents or a job id"
    )


def test_verify_before_collect_says_what_to_run(tmp_path: Path) -> None:
    job = prepare(write_docs(tmp_path / "docs", TEXTS))
    result = invoke("verify", job.id)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: Job {job.id} is prepared, so it cannot be verified — run `extractor submit --job {job.id}` first"
    )
