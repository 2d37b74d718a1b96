"""`compare A B`: entity-level precision / recall / F1 of A against B, per type and overall, on answers built by
hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.job_fixtures import invoke, invoke_json, job_from_answers


def entities(*pairs: tuple[str, str]) -> dict:
    return {"entities": [{"name": name, "type": kind} for name, kind in pairs], "relations": []}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("Alice Smith works for Acme in Paris.\n", encoding="utf-8")
    (folder / "b.txt").write_text("Bob moved to Berlin in 1999, where Carol lived.\n", encoding="utf-8")
    (folder / "c.txt").write_text("Dana wrote a book.\n", encoding="utf-8")
    return folder


def test_compare_gives_the_known_scores(docs: Path, tmp_path: Path) -> None:
    job_a = job_from_answers(
        docs,
        {
            "a.txt": entities(
                ("Alice Smith", "PERSON"), ("ACME ", "ORGANIZATION"), ("Paris", "LOCATION"), ("Acme", "ORGANIZATION")
            ),
            "b.txt": entities(("Bob", "PERSON"), ("Berlin", "LOCATION"), ("1999", "DATE")),
            "c.txt": entities(("Dana", "PERSON")),
        },
        tmp_path,
        model="gpt-4o-mini",
        verify=False,
    )
    job_b = job_from_answers(
        docs,
        {
            "a.txt": entities(("alice  smith", "PERSON"), ("Acme", "ORGANIZATION"), ("Paris", "LOCATION")),
            "b.txt": entities(("Bob", "PERSON"), ("Berlin", "ORGANIZATION"), ("Carol", "PERSON")),
            "c.txt": "not json",  # no valid answer: c.txt is left out of the comparison
        },
        tmp_path,
        model="gpt-4.1",
        verify=False,
    )

    data = invoke_json("compare", job_a.id, job_b.id)

    assert (data["job_a"], data["job_b"], data["reference"]) == (job_a.id, job_b.id, job_b.id)
    assert (data["documents"], data["only_in_a"], data["only_in_b"]) == (2, 1, 0)
    # a.txt: 3 of 3 agree (case, spaces and a repeat don't count). b.txt: Bob agrees; A alone has Berlin as a
    # LOCATION and 1999; B alone has Berlin as an ORGANIZATION and Carol.
    assert data["overall"] == {"precision": 0.6667, "recall": 0.6667, "f1": 0.6667, "tp": 4, "fp": 2, "fn": 2}
    assert data["overall_ignoring_type"] == {
        "precision": 0.8333,
        "recall": 0.8333,
        "f1": 0.8333,
        "tp": 5,
        "fp": 1,
        "fn": 1,
    }
    assert data["per_type"] == {
        "DATE": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 1, "fn": 0},
        "LOCATION": {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "tp": 1, "fp": 1, "fn": 0},
        "ORGANIZATION": {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "tp": 1, "fp": 0, "fn": 1},
        "PERSON": {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "tp": 2, "fp": 0, "fn": 1},
    }
    worst, best = data["disagree_most"]
    assert (worst["path"], worst["f1"], worst["agreed"]) == ("b.txt", 0.3333, 1)
    assert worst["only_a"] == ["1999 (DATE)", "berlin (LOCATION)"]
    assert worst["only_b"] == ["berlin (ORGANIZATION)", "carol (PERSON)"]
    assert (best["path"], best["f1"], best["only_a"], best["only_b"]) == ("a.txt", 1.0, [], [])

    text = invoke("compare", job_a.id, job_b.id)
    assert text.exit_code == 0 and "b.txt" in text.stdout and "carol (PERSON)" in text.stdout

    swapped = invoke_json("compare", job_b.id, job_a.id)
    assert (swapped["overall"]["precision"], swapped["overall"]["recall"]) == (0.6667, 0.6667)
    assert swapped["per_type"]["PERSON"] == {"precision": 0.6667, "recall": 1.0, "f1": 0.8, "tp": 2, "fp": 1, "fn": 0}


def test_jobs_without_a_document_in_common_are_refused(docs: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "z.txt").write_text("Zed lives in Oslo.\n", encoding="utf-8")
    job_a = job_from_answers(docs, {"a.txt": entities(("Alice Smith", "PERSON"))}, tmp_path, verify=False)
    job_b = job_from_answers(other, {"z.txt": entities(("Zed", "PERSON"))}, tmp_path, verify=False)

    result = invoke("compare", job_a.id, job_b.id)

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: Jobs {job_a.id} and {job_b.id} have no answered document in common — "
        "compare two jobs prepared from the same documents"
    )


def test_a_job_not_collected_yet_says_what_to_run(docs: Path, tmp_path: Path) -> None:
    done = job_from_answers(docs, {"a.txt": entities(("Alice Smith", "PERSON"))}, tmp_path, verify=False)
    prepared = invoke_json("prepare", str(docs), "--backend", "openai")

    result = invoke("compare", prepared["job_id"], done.id)

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: Job {prepared['job_id']} has no results yet — run `extractor collect {prepared['job_id']}` first"
    )
