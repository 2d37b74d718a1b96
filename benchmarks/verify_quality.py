"""Verify quality: answers with known truth over Re-DocRED, through the real prepare → collect --output-file → verify path.

    .venv/bin/python -m benchmarks.verify_quality [--split held-out|tuning|both] [--seed 6] [--write-docs]

The 500 dev documents are split in two: documents 0-249 ("tuning": the half anyone adjusting
the engine may look at) and 250-499 ("held-out": the half reported as the result; nothing in
the engine was adjusted on it). Each split is one job of its documents, their text as
Re-DocRED gives it (tokens joined by spaces, tests/redocred.py). Each document's answer:
- its gold entities, each in a surface variant drawn at random: as written, lower case,
  upper case, title case, a possessive ('s or ’s), NFKC-equivalent characters (full-width
  letters, a "ﬁ" ligature, no-break spaces, a curly apostrophe), extra whitespace;
- its gold relations (ends as written, evidence the sentence that states them);
- in a third of the documents, 1-2 planted leaks: entities of other documents of the same
  job that do not occur in this one (checked independently: casefolded NFKC word sequence),
  in a surface variant too, each with a relation to a gold entity quoting the origin's sentence;
- in a third, 1-2 invented names found in no document of the job: a person's first name
  joined to another person's surname, a near miss (one letter of a capitalised token of a
  gold name changed: "Smith" → "Smath"), or a made-up name; each with a relation.
Measured on verify.json: leak recall and attribution (the origin among the sources, and
every source holding the name), hallucination recall, false flags on gold entities and
relations, and per-document quarantine precision and recall under the default policy
(truth: a leak was planted) and under --strict (truth: a leak or an invented name).
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

VARIANTS = ("as written", "lower case", "upper case", "title case", "possessive", "NFKC-equivalent", "extra whitespace")
SYLLABLES = [a + b for a in "bdgklmnprstvz" for b in ("a", "e", "i", "o", "u", "ar", "en", "is")]
_PUNCTUATION = re.compile(r"[^\w\s']")  # "40-year-old" holds the word "40"
NOTE = (
    "Documents are the Re-DocRED texts as the dataset gives them (tokens joined by spaces), one job per split. The"
    " held-out split (documents 250-499) is the result: nothing was adjusted on it. The tuning split (0-249) is where"
    " the one change made while writing this benchmark came from (Turkish dotless ı folded to i, after an upper-cased"
    " \"ŞANLIURFA\" failed to ground). The grounding thresholds themselves predate this benchmark; the grounding"
    " tests sample the whole dev set, so the held-out split is unseen by this benchmark's tuning, not by every test."
)
SPLITS = {"tuning": (0, 250), "held-out": (250, 500)}


def words(text: str) -> str:
    """The independent presence check's form: NFKC, casefolded, punctuation as spaces, single spaces, padded."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    return f" {' '.join(_PUNCTUATION.sub(' ', folded).split())} "


def occurs(name: str, text_words: str) -> bool:
    core = words(name).strip()
    core = core[:-2].rstrip() if core.endswith("'s") else core
    return any(f" {core}{end}" in text_words for end in (" ", "' ", "'s "))  # a closing quote or possessive ends a word


def surface_variant(name: str, kind: str, rng: random.Random) -> str:
    """`name` written another way that still names the same thing."""
    if kind == "lower case":
        return name.lower()
    if kind == "upper case":
        return name.upper()
    if kind == "title case":
        return " ".join(w[:1].upper() + w[1:] for w in name.split(" "))
    if kind == "possessive":
        return name + rng.choice(["'s", "’s"]) if name[-1:].isalnum() else name
    if kind == "NFKC-equivalent":
        choice = rng.randrange(3)
        if choice == 0 and " " in name:
            return name.replace(" ", "\u00a0")
        if choice == 1 and "fi" in name:
            return name.replace("fi", "ﬁ", 1)
        return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalpha() else c for c in name)  # full-width
    if kind == "extra whitespace":
        return rng.choice(["  ", " ", "\n"]) + name.replace(" ", rng.choice(["  ", " \n "])) + rng.choice([" ", "  "])
    return name


def near_miss(name: str, rng: random.Random) -> str | None:
    """One letter of a capitalised token of at least 4 letters changed (a vowel for another): another name."""
    tokens = name.split(" ")
    options = [i for i, t in enumerate(tokens) if t[:1].isupper() and len(t) >= 4 and t.isalpha()]
    if not options:
        return None
    i = rng.choice(options)
    token = tokens[i]
    spots = [j for j in range(1, len(token)) if token[j] in "aeiou"]
    if not spots:
        return None
    j = rng.choice(spots)
    tokens[i] = token[:j] + rng.choice([v for v in "aeiou" if v != token[j]]) + token[j + 1 :]
    return " ".join(tokens)


def made_up_name(rng: random.Random) -> str:
    return " ".join("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize() for _ in range(2))


def build_answers(docs: list[dict[str, Any]], rng: random.Random) -> tuple[dict[str, str], dict[str, dict[str, Any]], dict[str, Any]]:
    """Texts by file name, answers by file name, and the truth about every planted fact."""
    from tests.redocred import MAX_ITEMS, gold_answer, redocred_text

    names = [f"{i:03d}.txt" for i in range(len(docs))]
    texts = {n: redocred_text(doc) for n, doc in zip(names, docs)}
    text_words = {n: words(t) for n, t in texts.items()}
    golds = {n: gold_answer(doc) for n, doc in zip(names, docs)}
    for gold in golds.values():  # room for the planted facts within the spec's maxItems (60)
        gold["entities"] = gold["entities"][:MAX_ITEMS - 4]
        gold["relations"] = gold["relations"][:MAX_ITEMS - 4]
    persons = [e["name"] for g in golds.values() for e in g["entities"] if e["type"] == "PERSON" and " " in e["name"]]
    truth: dict[str, Any] = {"gold": {}, "leaks": {}, "invented": {}, "planted_relations": {}}
    answers: dict[str, dict[str, Any]] = {}
    for n in names:
        gold = golds[n]
        entities, gold_truth = [], []
        for ent in gold["entities"]:
            kind = rng.choice(VARIANTS)
            written = surface_variant(ent["name"], kind, rng)
            entities.append({"name": written, "type": ent["type"]})
            gold_truth.append((written, kind))
        relations = list(gold["relations"])
        truth["gold"][n] = {"entities": gold_truth, "relations": len(relations)}
        planted_relations = []
        anchor = gold["entities"][0]["name"] if gold["entities"] else None
        if rng.random() < 1 / 3:
            leaks = []
            for _ in range(rng.randint(1, 2)):
                for _attempt in range(20):
                    origin = rng.choice(names)
                    if origin == n or not golds[origin]["entities"]:
                        continue
                    ent = rng.choice(golds[origin]["entities"])
                    if occurs(ent["name"], text_words[n]) or len(words(ent["name"]).strip()) < 2:
                        continue
                    written = surface_variant(ent["name"], rng.choice(VARIANTS), rng)
                    entities.append({"name": written, "type": ent["type"]})
                    leaks.append((written, ent["name"], origin))
                    if anchor and golds[origin]["relations"]:
                        sentence = next((r["evidence"] for r in golds[origin]["relations"]
                                         if occurs(ent["name"], words(r["evidence"]))), None)
                        if sentence:
                            relations.append({"source": anchor, "type": "RELATED_TO", "target": written, "evidence": sentence})
                            planted_relations.append("leaked")
                    break
            truth["leaks"][n] = leaks
        if rng.random() < 1 / 3:
            invented = []
            for _ in range(rng.randint(1, 2)):
                kind = rng.choice(["recombined person", "near miss", "made up"])
                for _attempt in range(50):
                    if kind == "recombined person":
                        name = rng.choice(persons).split(" ")[0] + " " + rng.choice(persons).split(" ")[-1]
                    elif kind == "near miss":
                        source = rng.choice(gold["entities"] or [{"name": ""}])["name"]
                        name = near_miss(source, rng) if source else None
                    else:
                        name = made_up_name(rng)
                    if name and not any(occurs(name, tw) for tw in text_words.values()):
                        break
                else:
                    continue
                entities.append({"name": name, "type": "PERSON"})
                invented.append((name, kind))
                if anchor:
                    relations.append({"source": anchor, "type": "RELATED_TO", "target": name,
                                      "evidence": f"{anchor} met {name} in the spring"})
                    planted_relations.append("ungrounded")
            truth["invented"][n] = invented
        truth["planted_relations"][n] = planted_relations
        answers[n] = {"entities": entities, "relations": relations}
    return texts, answers, truth


def run_job(workdir: Path, texts: dict[str, str], answers: dict[str, dict[str, Any]]) -> tuple[Any, dict[str, str]]:
    """prepare the folder, ingest the answers as a batch output file, collect; returns the job and doc_id by file."""
    from extractor.ingest import ingest_files
    from extractor.jobs import JobStore
    from extractor.prepare import PrepareOptions, prepare_job
    from extractor.results import collect_job
    from tests.verify_fixtures import output_line

    folder = workdir / "docs"
    folder.mkdir(parents=True)
    for name, text in texts.items():
        (folder / name).write_text(text + "\n", encoding="utf-8")
    store = JobStore(workdir / "jobs")
    job = prepare_job(store, folder, PrepareOptions(backend="openai", count_tokens=False)).job
    by_path = {d["path"]: d for d in job.documents()}
    output = workdir / "output.jsonl"
    output.write_bytes(b"".join(orjson.dumps(output_line(by_path[n]["custom_id"], a)) + b"\n" for n, a in answers.items()))
    ingest_files(job, output, None)
    collect_job(store.load(job.id), fetch=False)
    return store.load(job.id), {n: d["doc_id"] for n, d in by_path.items()}


def evaluate(split: str, docs: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    from extractor.verify.policy import Policy
    from extractor.verify.verdicts import read_report, verify_job

    rng = random.Random(f"{seed}:{split}")
    texts, answers, truth = build_answers(docs, rng)
    workdir = Path(tempfile.mkdtemp(prefix=f"verify-quality-{split}-"))
    try:
        job, doc_ids = run_job(workdir, texts, answers)
        path_of = {doc_id: n for n, doc_id in doc_ids.items()}
        verify_job(job)
        default = {d["path"]: d for d in read_report(job)["documents"]}
        verify_job(job, policy=Policy.strict())
        strict = {d["path"]: d for d in read_report(job)["documents"]}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    m: Counter[str] = Counter()
    misses: list[str] = []
    flagged_by_variant: Counter[str] = Counter()
    gold_by_variant: Counter[str] = Counter()
    invented_by_kind: Counter[str] = Counter()
    caught_by_kind: Counter[str] = Counter()
    for n, doc in default.items():
        verdicts = [(e["name"], e) for e in doc["entities"]]
        gold_count = len(truth["gold"][n]["entities"])
        for (written, kind), (_, ent) in zip(truth["gold"][n]["entities"], verdicts[:gold_count]):
            m["gold"] += 1
            gold_by_variant[kind] += 1
            if ent["verdict"] not in ("grounded", "fuzzy"):
                m["gold flagged"] += 1
                flagged_by_variant[kind] += 1
                misses.append(f"gold flagged {ent['verdict']}: {written!r} in {n}")
        planted = verdicts[gold_count:]
        by_name = {name: ent for name, ent in planted}
        for written, original, origin in truth["leaks"].get(n, []):
            ent = by_name[written]
            m["leaks"] += 1
            if ent["verdict"] == "leaked":
                m["leaks caught"] += 1
                sources = ent["sources"]
                if doc_ids[origin] in sources and all(occurs(original, words(texts[path_of[s]])) for s in sources):
                    m["leaks attributed"] += 1
                else:
                    misses.append(f"leak misattributed: {written!r} in {n} → {sources}")
            else:
                misses.append(f"leak missed ({ent['verdict']}): {written!r} in {n} from {origin}")
        for name, kind in truth["invented"].get(n, []):
            ent = by_name[name]
            m["invented"] += 1
            invented_by_kind[kind] += 1
            if ent["verdict"] == "ungrounded":
                m["invented caught"] += 1
                caught_by_kind[kind] += 1
            else:
                misses.append(f"invented name not caught ({ent['verdict']}): {name!r} in {n}")
        gold_relations = truth["gold"][n]["relations"]
        for rel in doc["relations"][:gold_relations]:
            m["gold relations"] += 1
            if rel["verdict"] not in ("grounded", "fuzzy"):
                m["gold relations flagged"] += 1
                misses.append(f"gold relation flagged {rel['verdict']}: {rel['source']} -> {rel['target']} in {n}")
        for rel, expected in zip(doc["relations"][gold_relations:], truth["planted_relations"][n]):
            m["planted relations"] += 1
            m["planted relations right"] += rel["verdict"] == expected
        leaked_doc = bool(truth["leaks"].get(n))
        bad_doc = leaked_doc or bool(truth["invented"].get(n))
        for policy, statuses, should in (("default", default, leaked_doc), ("strict", strict, bad_doc)):
            quarantined = statuses[n]["status"] == "quarantined"
            m[f"{policy} tp"] += quarantined and should
            m[f"{policy} fp"] += quarantined and not should
            m[f"{policy} fn"] += should and not quarantined
    return {"split": split, "documents": len(docs), "m": dict(m), "misses": misses,
            "flagged_by_variant": dict(flagged_by_variant), "gold_by_variant": dict(gold_by_variant),
            "invented_by_kind": dict(invented_by_kind), "caught_by_kind": dict(caught_by_kind)}


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One result over several rounds: counts summed, misses concatenated."""
    merged: dict[str, Any] = {"split": rounds[0]["split"], "documents": rounds[0]["documents"], "rounds": len(rounds), "misses": []}
    for key in ("m", "flagged_by_variant", "gold_by_variant", "invented_by_kind", "caught_by_kind"):
        total: Counter[str] = Counter()
        for r in rounds:
            total.update(r[key])
        merged[key] = dict(total)
    for r in rounds:
        merged["misses"].extend(r["misses"])
    return merged


def pct(num: int, den: int) -> str:
    return f"{100 * num / den:.2f} % ({num}/{den})" if den else "n/a"


def report(results: list[dict[str, Any]]) -> str:
    rows = ["| measure | goal | " + " | ".join(f"{r['split']} ({r['documents']} docs × {r['rounds']} rounds)" for r in results) + " |",
            "|---|---|" + "---|" * len(results)]

    def row(label: str, goal: str, fn) -> None:
        rows.append(f"| {label} | {goal} | " + " | ".join(fn(r["m"]) for r in results) + " |")

    row("leak recall", "≥ 99.5 %", lambda m: pct(m.get("leaks caught", 0), m.get("leaks", 0)))
    row("leaks attributed to a correct source (origin among sources, every source holds it)", "all",
        lambda m: pct(m.get("leaks attributed", 0), m.get("leaks caught", 0)))
    row("hallucination recall", "≥ 99 %", lambda m: pct(m.get("invented caught", 0), m.get("invented", 0)))
    row("false flags on gold entities", "≤ 1 %", lambda m: pct(m.get("gold flagged", 0), m.get("gold", 0)))
    row("false flags on gold relations", "", lambda m: pct(m.get("gold relations flagged", 0), m.get("gold relations", 0)))
    row("planted relations judged leaked / ungrounded as planted", "",
        lambda m: pct(m.get("planted relations right", 0), m.get("planted relations", 0)))
    for policy, truth in (("default", "a leak planted"), ("strict", "a leak or an invented name planted")):
        row(f"quarantine precision, {policy} policy (truth: {truth})", "",
            lambda m, p=policy: pct(m.get(f"{p} tp", 0), m.get(f"{p} tp", 0) + m.get(f"{p} fp", 0)))
        row(f"quarantine recall, {policy} policy", "",
            lambda m, p=policy: pct(m.get(f"{p} tp", 0), m.get(f"{p} tp", 0) + m.get(f"{p} fn", 0)))
    lines = ["\n".join(rows), ""]
    for r in results:
        variants = ", ".join(f"{k} {r['flagged_by_variant'].get(k, 0)}/{r['gold_by_variant'].get(k, 0)}" for k in VARIANTS)
        kinds = ", ".join(f"{k} {r['caught_by_kind'].get(k, 0)}/{v}" for k, v in sorted(r["invented_by_kind"].items()))
        lines.append(f"{r['split']}: gold entities flagged by surface variant: {variants}; invented names caught by kind: {kinds}.")
        for miss in r["misses"][:8]:
            lines.append(f"- {miss}")
        if len(r["misses"]) > 8:
            lines.append(f"- … and {len(r['misses']) - 8} more")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("held-out", "tuning", "both"), default="both")
    parser.add_argument("--seed", type=int, default=6, help="the first seed")
    parser.add_argument("--seeds", type=int, default=5, help="rounds, each with its own draws of variants, leaks and inventions")
    parser.add_argument("--write-docs", action="store_true", help="write the figures into docs/benchmarks.md")
    args = parser.parse_args()
    from tests.redocred import load_redocred

    docs = load_redocred()
    splits = ["held-out", "tuning"] if args.split == "both" else [args.split]
    results = []
    for split in splits:
        lo, hi = SPLITS[split]
        rounds = [evaluate(split, docs[lo:hi], seed) for seed in range(args.seed, args.seed + args.seeds)]
        results.append(merge(rounds))
        print(f"{split}: done", file=sys.stderr)
    text = report(results)
    print(text)
    if args.write_docs:
        from benchmarks.verify_speed import write_section

        write_section("verify quality", f"`python -m benchmarks.verify_quality --seed {args.seed} --seeds {args.seeds}`\n\n"
                      f"{NOTE}\n\n{text}\n")


if __name__ == "__main__":
    main()
