"""Verify quality: answers with known truth over Re-DocRED, through the real prepare → collect --output-file → verify
path.

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

from extractor.verify.values import MONTHS  # the month names verify itself parses

VARIANTS = ("as written", "lower case", "upper case", "title case", "possessive", "NFKC-equivalent", "extra whitespace")
SYLLABLES = [a + b for a in "bdgklmnprstvz" for b in ("a", "e", "i", "o", "u", "ar", "en", "is")]
_PUNCTUATION = re.compile(r"[^\w\s']")  # "40-year-old" holds the word "40"
NOTE = (
    "Documents are the Re-DocRED texts as the dataset gives them (tokens joined by spaces), one job per split. The"
    " held-out split (documents 250-499) is the result: nothing was adjusted on it. The tuning split (0-249) is where"
    " the one change made while writing this benchmark came from (Turkish dotless ı folded to i, after an upper-cased"
    ' "ŞANLIURFA" failed to ground). The grounding thresholds themselves predate this benchmark; the grounding'
    " tests sample the whole dev set, so the held-out split is unseen by this benchmark's tuning, not by every test."
    " Since issue 18 a planted leak must be specific enough to be a leak under the rule verify states (README,"
    ' "When a name found elsewhere is a leak"), checked here by an independent implementation: candidates that are a'
    " year, a number of fewer than 3 significant digits, initials only, or a one-word name that is weak or nothing"
    " by the rule (one of the ~3,000 commonest English words, written as a first name somewhere in the job, never"
    " written by its origin as a name mid-sentence, or held by more than 10 % of the documents) are skipped and"
    " counted; a weak name is a leak only next to a real one, which a planted leak need not have. The rewrite set"
    " and its person rules were adjusted on the held-out split while they were written (the tuning split was not"
    " looked at): for the rewrite set, the tuning split is the unseen one."
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


_NUMBER_WRITTEN = re.compile(
    r"(?:us\$|\$|€|£|¥)?\s*([\d,.]*\d[\d,.]*)\s*(?:thousand|million|billion|trillion|bn|%|percent)?(?:['’]s)?"
)
_SENTENCE_END = re.compile(r"[.!?:]\s*$")


def specific(name: str, origin: str, texts: dict[str, str], text_words: dict[str, str]) -> bool:
    """Whether a planted leak is one under the rule verify states (README, verify/leaks.py), checked apart from it.

    Not: a number of fewer than 3 significant digits or a bare year; a type word; initials only ("U.S."); a one-word
    name that is one of
    the language's ~3,000 commonest words (wordfreq Zipf ≥ 4.5: "French", "Europe"), that some document of the job
    writes as a first name (followed by a capitalised word), that its origin never writes capitalised mid-sentence
    (or at a sentence start, if it is no word of the language: Zipf < 3), or that more than 10 % of the job's
    documents hold. A weak hit needs corroboration, which a planted leak may not have: those are skipped too.
    """
    from wordfreq import zipf_frequency  # the data verify's rule uses; the logic below is this benchmark's own

    from extractor.verify.leaks import TYPE_WORDS  # the rule's vocabulary

    number = _NUMBER_WRITTEN.fullmatch(" ".join(unicodedata.normalize("NFKC", name).casefold().split()))
    if number:  # digits, maybe with a currency, a scale word or a percent: "1.2 million" has 2 significant digits
        digits = re.sub(r"\D", "", number.group(1)).strip("0")
        return len(digits) >= 3 and not re.fullmatch(r"[12]\d{3}", name.strip())
    core = words(name).strip()
    core = core[:-2].rstrip() if core.endswith("'s") else core
    if all(len(word) == 1 for word in core.split()):
        return False  # initials only ("U.S.", "S.A.")
    if " " in core:
        return True
    if core in TYPE_WORDS or core.rstrip("s") in TYPE_WORDS:
        return False  # the rule's list of generic nouns ("Awards")
    if sum(f" {core} " in tw for tw in text_words.values()) > max(3, 0.1 * len(text_words)):
        return False
    frequency = zipf_frequency(core, "en", wordlist="small")
    if frequency >= 4.5:
        return False
    pattern = re.compile(rf"(?<!\w){re.escape(name.strip())}(?!\w)", flags=re.IGNORECASE)
    for text in texts.values():
        for match in pattern.finditer(text):
            if match.group()[:1].isupper() and text[match.end() :].lstrip(" ")[:1].isupper():
                return False  # a first name somewhere in the job
    for match in pattern.finditer(texts[origin]):
        written = match.group()
        before = texts[origin][: match.start()].rstrip()
        if written[:1].isupper() and (frequency < 3 or (before and not _SENTENCE_END.search(before))):
            return True
    return False


def fresh(seen: set[tuple[str, str]], name: str, kind: str) -> bool:
    """Whether (name, type) is new to this answer, as collect compares them (casefolded, spaces collapsed); records
    it."""
    key = (" ".join(name.casefold().split()), kind)
    if key in seen:
        return False
    seen.add(key)
    return True


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


def build_answers(
    docs: list[dict[str, Any]], rng: random.Random
) -> tuple[dict[str, str], dict[str, dict[str, Any]], dict[str, Any]]:
    """Texts by file name, answers by file name, and the truth about every planted fact."""
    from tests.redocred import MAX_ITEMS, gold_answer, redocred_text

    names = [f"{i:03d}.txt" for i in range(len(docs))]
    texts = {n: redocred_text(doc) for n, doc in zip(names, docs, strict=True)}
    text_words = {n: words(t) for n, t in texts.items()}
    golds = {n: gold_answer(doc) for n, doc in zip(names, docs, strict=True)}
    for gold in golds.values():  # room for the planted facts within the spec's maxItems (60)
        gold["entities"] = gold["entities"][: MAX_ITEMS - 4]
        gold["relations"] = gold["relations"][: MAX_ITEMS - 4]
    persons = [e["name"] for g in golds.values() for e in g["entities"] if e["type"] == "PERSON" and " " in e["name"]]
    truth: dict[str, Any] = {"gold": {}, "leaks": {}, "invented": {}, "planted_relations": {}, "unspecific": 0}
    person_ends = {(p.split(" ")[0], p.split(" ")[-1]) for p in persons}
    answers: dict[str, dict[str, Any]] = {}
    for n in names:
        gold = golds[n]
        entities, gold_truth = [], []
        seen: set[tuple[str, str]] = set()  # collect keeps one of each (name, type): so does the answer here
        for ent in gold["entities"]:
            kind = rng.choice(VARIANTS)
            written = surface_variant(ent["name"], kind, rng)
            if not fresh(seen, written, ent["type"]):
                continue
            entities.append({"name": written, "type": ent["type"]})
            gold_truth.append((written, kind))
        relations = [
            r
            for r in gold["relations"]
            if fresh(seen, "\0".join(str(r[f]) for f in ("source", "type", "target", "evidence")), "relation")
        ]
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
                    if not specific(ent["name"], origin, texts, text_words):
                        truth["unspecific"] += 1  # a year, a small number, a common word: no leak by the stated rule
                        continue
                    written = surface_variant(ent["name"], rng.choice(VARIANTS), rng)
                    if not fresh(seen, written, ent["type"]):
                        continue
                    entities.append({"name": written, "type": ent["type"]})
                    leaks.append((written, ent["name"], origin))
                    if anchor and golds[origin]["relations"]:
                        sentence = next(
                            (
                                r["evidence"]
                                for r in golds[origin]["relations"]
                                if occurs(ent["name"], words(r["evidence"]))
                            ),
                            None,
                        )
                        if sentence:
                            relations.append(
                                {"source": anchor, "type": "RELATED_TO", "target": written, "evidence": sentence}
                            )
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
                        given = name.split(" ")[0]
                        if (
                            tuple(name.split(" ")) in person_ends
                            or given.lower() in NOT_NAMES
                            or len(given.rstrip(".")) < 2
                        ):
                            continue  # "Ella Morris" of some "Ella Mabel Morris": that person, not an invention
                    elif kind == "near miss":
                        source = rng.choice(gold["entities"] or [{"name": ""}])["name"]
                        name = near_miss(source, rng) if source else None
                    else:
                        name = made_up_name(rng)
                    if name and not any(occurs(name, tw) for tw in text_words.values()) and fresh(seen, name, "PERSON"):
                        break
                else:
                    continue
                entities.append({"name": name, "type": "PERSON"})
                invented.append((name, kind))
                if anchor:
                    relations.append(
                        {
                            "source": anchor,
                            "type": "RELATED_TO",
                            "target": name,
                            "evidence": f"{anchor} met {name} in the spring",
                        }
                    )
                    planted_relations.append("ungrounded")
            truth["invented"][n] = invented
        truth["planted_relations"][n] = planted_relations
        answers[n] = {"entities": entities, "relations": relations}
    return texts, answers, truth


_DMY = re.compile(r"(\d{1,2}) ([A-Z][a-z]+) (\d{4})")
_MDY = re.compile(r"([A-Z][a-z]+) (\d{1,2}) , (\d{4})")
_GROUPED = re.compile(r"\d{1,3}(?: ?, ?\d{3})+")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?) (?:percent|%)")
HONORIFICS = ["Dr.", "Mr.", "Ms.", "Prof.", "Sir"]
# Words that make a "name" a title or a phrase, not a given name and a surname ("The Phantom", "St Anne", "Crown
# Prince Yin").
NOT_NAMES = {
    "the",
    "st",
    "saint",
    "san",
    "prince",
    "princess",
    "king",
    "queen",
    "sir",
    "lord",
    "lady",
    "crown",
    "pope",
    "emperor",
    "empress",
    "duke",
    "duchess",
    "count",
    "countess",
    "baron",
    "general",
    "admiral",
    "captain",
    "president",
    "bishop",
    "cardinal",
    "father",
    "mother",
    "sister",
    "brother",
    "dr",
    "mr",
    "mrs",
    "ms",
}


def full_date(name: str) -> tuple[int, int, int] | None:
    """(year, month, day) of a Re-DocRED date written "9 October 1991" or "June 4 , 1996"; None otherwise."""
    match = _DMY.fullmatch(name)
    if match and match.group(2).lower() in MONTHS:
        return int(match.group(3)), MONTHS.index(match.group(2).lower()) + 1, int(match.group(1))
    match = _MDY.fullmatch(name)
    if match and match.group(1).lower() in MONTHS:
        return int(match.group(3)), MONTHS.index(match.group(1).lower()) + 1, int(match.group(2))
    return None


def person_parts(name: str) -> list[str] | None:
    """The words of a person's name of 2-3 capitalised alphabetic words ("Henri de Montfort" is not rewritten)."""
    parts = name.split(" ")
    if (
        2 <= len(parts) <= 3
        and all(p.isalpha() and p[:1].isupper() and len(p) > 1 for p in parts)
        and not re.fullmatch(r"[IVXLCDM]+|Jr|Sr", parts[-1])
        and not any(p.lower() in NOT_NAMES for p in parts)
    ):
        return parts
    return None


def only_this_person(parts: list[str], text: str, *, initial: bool) -> bool:
    """Whether every mention of the surname in `text` is this person: right after one of the name's own words, or
    after no capitalised word at all (with `initial`: no capitalised word of the same initial but the first name)."""
    for match in re.finditer(rf"(?<![\w-])(\S+) (\S+) {re.escape(parts[-1])}(?![\w-])", " " + text):
        for before in (match.group(2), match.group(1)):
            if before in parts[:-1]:
                break  # this person's own name
            if not before[:1].isupper() or not before.isalpha():
                break  # no name before the surname
            if not initial or before[0] == parts[0][0]:
                return False  # another person of that surname (and initial)
    return True


def rewrite(ent: dict[str, str], people: list[list[str]], rng: random.Random, text: str) -> tuple[str, str] | None:
    """A gold date, number or person name written as models write them: (form, kind), or None when none applies.

    Person forms that would name two people of the document ("J. Smith" beside James Smith, "Dr. Smith"
    beside another Smith) are not drawn: they are no longer the same person.
    """
    name = ent["name"]
    if ent["type"] == "DATE":
        date = full_date(name)
        if date is None:
            return None
        y, m, d = date
        forms = [
            (f"{y:04d}-{m:02d}-{d:02d}", "date ISO"),
            (f"{MONTHS[m - 1].title()} {d}, {y}", "date month first"),
            (f"{d} {MONTHS[m - 1].title()} {y}", "date day first"),
            (
                f"{d}{'th' if 10 <= d <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')} "
                f"of {MONTHS[m - 1].title()} {y}",
                "date ordinal",
            ),
        ]
        if d > 12:
            forms.append((f"{d:02d}/{m:02d}/{y}", "date numeric"))
        forms = [f for f in forms if f[0] != name]
        return rng.choice(forms)
    if ent["type"] == "NUMBER":
        if _GROUPED.fullmatch(name):
            return name.replace(" ", "").replace(",", ""), "number separators dropped"
        if name.isdigit() and len(name) >= 5:
            return f"{int(name):,}", "number separators added"
        match = _PERCENT.fullmatch(name)
        if match:
            return f"{match.group(1)}%", "number percent sign"
        match = re.fullmatch(r"(\d+(?:\.\d+)?) (million|billion)", name)
        if match:
            value = float(match.group(1)) * (10**6 if match.group(2) == "million" else 10**9)
            return f"{round(value):,}", "number scale word to digits"
        return None
    if ent["type"] != "PERSON":
        return None
    parts = person_parts(name)
    if parts is None:
        return None
    first, last = parts[0], parts[-1]
    same_surname = [p for p in people if p[-1] == last and p != parts]
    forms = [(f"{rng.choice(HONORIFICS)} {name}", "person honorific added")]
    if len(parts) == 3:
        forms += [
            (f"{first} {last}", "person middle dropped"),
            (f"{first} {parts[1][0]}. {last}", "person middle initial"),
        ]
    if not any(p[0][0] == first[0] for p in same_surname) and only_this_person(parts, text, initial=True):
        forms.append((f"{first[0]}. {last}", "person first initial"))
    if not same_surname and only_this_person(parts, text, initial=False):
        forms.append((f"{rng.choice(HONORIFICS)} {last}", "person honorific and surname"))
    return rng.choice(forms)


def build_rewrites(
    docs: list[dict[str, Any]], rng: random.Random
) -> tuple[dict[str, str], dict[str, dict[str, Any]], dict[str, Any]]:
    """The rewrite set: each document's gold dates, numbers and person names rewritten, and in a third of the
    documents 1-2 reworded leaks (another document's date, number or person, rewritten)."""
    from tests.redocred import gold_answer, redocred_text

    names = [f"{i:03d}.txt" for i in range(len(docs))]
    texts = {n: redocred_text(doc) for n, doc in zip(names, docs, strict=True)}
    text_words = {n: words(t) for n, t in texts.items()}
    golds = {n: gold_answer(doc) for n, doc in zip(names, docs, strict=True)}
    people = {
        n: [p for p in (person_parts(e["name"]) for e in g["entities"] if e["type"] == "PERSON") if p]
        for n, g in golds.items()
    }
    truth: dict[str, Any] = {"rewrites": {}, "leaks": {}}
    answers: dict[str, dict[str, Any]] = {}
    for n in names:
        entities, rewrites = [], []
        seen: set[tuple[str, str]] = set()
        for ent in golds[n]["entities"]:
            form = rewrite(ent, people[n], rng, texts[n])
            if form is not None and fresh(seen, form[0], ent["type"]):
                entities.append({"name": form[0], "type": ent["type"]})
                rewrites.append(form)
        truth["rewrites"][n] = rewrites
        leaks = []
        if rng.random() < 1 / 3:
            for _ in range(rng.randint(1, 2)):
                for _attempt in range(30):
                    origin = rng.choice(names)
                    if origin == n:
                        continue
                    candidates = [e for e in golds[origin]["entities"] if e["type"] in ("DATE", "NUMBER", "PERSON")]
                    if not candidates:
                        continue
                    ent = rng.choice(candidates)
                    form = rewrite(ent, people[origin], rng, texts[origin])
                    if (
                        form is None
                        or not leak_worthy(ent, form, text_words[n])
                        or not fresh(seen, form[0], ent["type"])
                    ):
                        continue
                    entities.append({"name": form[0], "type": ent["type"]})
                    leaks.append((form[0], ent["name"], origin, form[1]))
                    break
        truth["leaks"][n] = leaks
        answers[n] = {"entities": entities, "relations": []}
    return texts, answers, truth


def leak_worthy(ent: dict[str, str], form: tuple[str, str], target_words: str) -> bool:
    """Whether a reworded fact of another document is a leak in this one: specific, and nothing of it is here."""
    name, kind = ent["name"], form[1]
    if kind == "person honorific and surname":
        return False  # one surname alone: a common word of names, not specific (verify/leaks.py)
    if ent["type"] == "PERSON":
        return f" {name.split(' ')[-1].casefold()} " not in target_words  # not even the surname here
    if ent["type"] == "DATE":
        return f" {name.split(' ')[-1]} " not in target_words  # not even the year here
    if re.fullmatch(r"[12]\d{3}", form[0]):
        return False  # a bare year-like number: no leak by the stated rule
    digits = re.sub(r"\D", "", name)
    return len(digits.strip("0")) >= 3 and f" {digits} " not in target_words and not occurs(name, target_words)


def evaluate_rewrites(split: str, docs: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    from extractor.verify.verdicts import read_report, verify_job

    rng = random.Random(f"{seed}:{split}:rewrites")
    texts, answers, truth = build_rewrites(docs, rng)
    workdir = Path(tempfile.mkdtemp(prefix=f"verify-rewrites-{split}-"))
    try:
        job, doc_ids = run_job(workdir, texts, answers)
        verify_job(job)
        report_docs = {d["path"]: d for d in read_report(job)["documents"]}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    m: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    flagged_kind: Counter[str] = Counter()
    misses: list[str] = []
    for n, doc in report_docs.items():
        ents = doc["entities"]
        rewrites = truth["rewrites"][n]
        for (form, kind), ent in zip(rewrites, ents[: len(rewrites)], strict=True):
            m["rewrites"] += 1
            by_kind[kind] += 1
            if ent["verdict"] not in ("grounded", "fuzzy"):
                m["rewrites flagged"] += 1
                flagged_kind[kind] += 1
                misses.append(f"rewrite flagged {ent['verdict']}: {form!r} ({kind}) in {n}")
        planted = {e["name"]: e for e in ents[len(rewrites) :]}
        for form, original, origin, kind in truth["leaks"][n]:
            ent = planted[form]
            m["reworded leaks"] += 1
            if ent["verdict"] == "leaked":
                m["reworded leaks caught"] += 1
                m["reworded leaks attributed"] += doc_ids[origin] in ent["sources"]
            else:
                misses.append(
                    f"reworded leak missed ({ent['verdict']}): {form!r} ({kind}) of {original!r} in {n} from {origin}"
                )
        if not truth["leaks"][n]:
            m["documents without a leak"] += 1
            m["documents without a leak quarantined"] += doc["status"] == "quarantined"
    return {
        "split": split,
        "m": dict(m),
        "by_kind": dict(by_kind),
        "flagged_kind": dict(flagged_kind),
        "misses": misses,
    }


def run_job(workdir: Path, texts: dict[str, str], answers: dict[str, dict[str, Any]]) -> tuple[Any, dict[str, str]]:
    """prepare the folder, ingest the answers as a batch output file, collect; returns the job and doc_id by file."""
    from extractor.collect.ingest import ingest_files
    from extractor.collect.results import collect_job
    from extractor.jobs import JobStore
    from extractor.prepare.stage import PrepareOptions, prepare_job
    from tests.verify_fixtures import output_line

    folder = workdir / "docs"
    folder.mkdir(parents=True)
    for name, text in texts.items():
        (folder / name).write_text(text + "\n", encoding="utf-8")
    store = JobStore(workdir / "jobs")
    job = prepare_job(store, folder, PrepareOptions(backend="openai", count_tokens=False)).job
    by_path = {d["path"]: d for d in job.documents()}
    output = workdir / "output.jsonl"
    output.write_bytes(
        b"".join(orjson.dumps(output_line(by_path[n]["custom_id"], a)) + b"\n" for n, a in answers.items())
    )
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

    m: Counter[str] = Counter({"unspecific leaks not planted": truth["unspecific"]})
    misses: list[str] = []
    flagged_by_variant: Counter[str] = Counter()
    gold_by_variant: Counter[str] = Counter()
    invented_by_kind: Counter[str] = Counter()
    caught_by_kind: Counter[str] = Counter()
    for n, doc in default.items():
        verdicts = [(e["name"], e) for e in doc["entities"]]
        gold_count = len(truth["gold"][n]["entities"])
        for (written, kind), (_, ent) in zip(truth["gold"][n]["entities"], verdicts[:gold_count], strict=False):
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
        for rel, expected in zip(doc["relations"][gold_relations:], truth["planted_relations"][n], strict=False):
            m["planted relations"] += 1
            m["planted relations right"] += rel["verdict"] == expected
        leaked_doc = bool(truth["leaks"].get(n))
        bad_doc = leaked_doc or bool(truth["invented"].get(n))
        for policy, statuses, should in (("default", default, leaked_doc), ("strict", strict, bad_doc)):
            quarantined = statuses[n]["status"] == "quarantined"
            m[f"{policy} tp"] += quarantined and should
            m[f"{policy} fp"] += quarantined and not should
            m[f"{policy} fn"] += should and not quarantined
    return {
        "split": split,
        "documents": len(docs),
        "m": dict(m),
        "misses": misses,
        "flagged_by_variant": dict(flagged_by_variant),
        "gold_by_variant": dict(gold_by_variant),
        "invented_by_kind": dict(invented_by_kind),
        "caught_by_kind": dict(caught_by_kind),
    }


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One result over several rounds: counts summed, misses concatenated."""
    merged: dict[str, Any] = {
        "split": rounds[0]["split"],
        "documents": rounds[0]["documents"],
        "rounds": len(rounds),
        "misses": [],
    }
    for key in ("m", "flagged_by_variant", "gold_by_variant", "invented_by_kind", "caught_by_kind"):
        total: Counter[str] = Counter()
        for r in rounds:
            total.update(r[key])
        merged[key] = dict(total)
    for r in rounds:
        merged["misses"].extend(r["misses"])
    return merged


def merge_rewrites(rounds: list[dict[str, Any]], documents: int) -> dict[str, Any]:
    merged: dict[str, Any] = {"split": rounds[0]["split"], "documents": documents, "rounds": len(rounds), "misses": []}
    for key in ("m", "by_kind", "flagged_kind"):
        total: Counter[str] = Counter()
        for r in rounds:
            total.update(r[key])
        merged[key] = dict(total)
    for r in rounds:
        merged["misses"].extend(r["misses"])
    return merged


def report_rewrites(results: list[dict[str, Any]]) -> str:
    rows = [
        "Rewrite set (a second job per split and round): every gold full date, number with separators, percent or"
        " scale word, and person name of 2-3 capitalised words, rewritten as models write them; in a third of the"
        " documents 1-2 reworded leaks (another document's date, number or person, rewritten, nothing of it in this"
        " document).",
        "",
        "| measure | goal | "
        + " | ".join(f"{r['split']} ({r['documents']} docs × {r['rounds']} rounds)" for r in results)
        + " |",
        "|---|---|" + "---|" * len(results),
    ]

    def row(label: str, goal: str, fn) -> None:
        rows.append(f"| {label} | {goal} | " + " | ".join(fn(r["m"]) for r in results) + " |")

    row("false flags on rewritten gold", "≤ 1 %", lambda m: pct(m.get("rewrites flagged", 0), m.get("rewrites", 0)))
    row(
        "reworded-leak recall", "≥ 99.5 %", lambda m: pct(m.get("reworded leaks caught", 0), m.get("reworded leaks", 0))
    )
    row(
        "reworded leaks attributed to their origin",
        "all",
        lambda m: pct(m.get("reworded leaks attributed", 0), m.get("reworded leaks caught", 0)),
    )
    row(
        "documents without a leak quarantined",
        "0 %",
        lambda m: pct(m.get("documents without a leak quarantined", 0), m.get("documents without a leak", 0)),
    )
    lines = ["\n".join(rows), ""]
    for r in results:
        kinds = ", ".join(f"{k} {r['flagged_kind'].get(k, 0)}/{v}" for k, v in sorted(r["by_kind"].items()))
        lines.append(f"{r['split']}: rewrites flagged by form: {kinds}.")
        for miss in r["misses"][:12]:
            lines.append(f"- {miss}")
        if len(r["misses"]) > 12:
            lines.append(f"- … and {len(r['misses']) - 12} more")
    return "\n".join(lines)


def pct(num: int, den: int) -> str:
    return f"{100 * num / den:.2f} % ({num}/{den})" if den else "n/a"


def report(results: list[dict[str, Any]]) -> str:
    rows = [
        "| measure | goal | "
        + " | ".join(f"{r['split']} ({r['documents']} docs × {r['rounds']} rounds)" for r in results)
        + " |",
        "|---|---|" + "---|" * len(results),
    ]

    def row(label: str, goal: str, fn) -> None:
        rows.append(f"| {label} | {goal} | " + " | ".join(fn(r["m"]) for r in results) + " |")

    row("leak recall", "≥ 99.5 %", lambda m: pct(m.get("leaks caught", 0), m.get("leaks", 0)))
    row(
        "leaks attributed to a correct source (origin among sources, every source holds it)",
        "all",
        lambda m: pct(m.get("leaks attributed", 0), m.get("leaks caught", 0)),
    )
    row(
        "planted-leak candidates skipped as not specific (years, small numbers, common or first-name words)",
        "",
        lambda m: str(m.get("unspecific leaks not planted", 0)),
    )
    row("hallucination recall", "≥ 99 %", lambda m: pct(m.get("invented caught", 0), m.get("invented", 0)))
    row("false flags on gold entities", "≤ 1 %", lambda m: pct(m.get("gold flagged", 0), m.get("gold", 0)))
    row(
        "false flags on gold relations",
        "",
        lambda m: pct(m.get("gold relations flagged", 0), m.get("gold relations", 0)),
    )
    row(
        "planted relations judged leaked / ungrounded as planted",
        "",
        lambda m: pct(m.get("planted relations right", 0), m.get("planted relations", 0)),
    )
    for policy, truth in (("default", "a leak planted"), ("strict", "a leak or an invented name planted")):
        row(
            f"quarantine precision, {policy} policy (truth: {truth})",
            "",
            lambda m, p=policy: pct(m.get(f"{p} tp", 0), m.get(f"{p} tp", 0) + m.get(f"{p} fp", 0)),
        )
        row(
            f"quarantine recall, {policy} policy",
            "",
            lambda m, p=policy: pct(m.get(f"{p} tp", 0), m.get(f"{p} tp", 0) + m.get(f"{p} fn", 0)),
        )
    lines = ["\n".join(rows), ""]
    for r in results:
        variants = ", ".join(
            f"{k} {r['flagged_by_variant'].get(k, 0)}/{r['gold_by_variant'].get(k, 0)}" for k in VARIANTS
        )
        kinds = ", ".join(f"{k} {r['caught_by_kind'].get(k, 0)}/{v}" for k, v in sorted(r["invented_by_kind"].items()))
        lines.append(
            f"{r['split']}: gold entities flagged by surface variant: {variants}; "
            f"invented names caught by kind: {kinds}."
        )
        for miss in r["misses"][:8]:
            lines.append(f"- {miss}")
        if len(r["misses"]) > 8:
            lines.append(f"- … and {len(r['misses']) - 8} more")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("held-out", "tuning", "both"), default="both")
    parser.add_argument("--seed", type=int, default=6, help="the first seed")
    parser.add_argument(
        "--seeds", type=int, default=5, help="rounds, each with its own draws of variants, leaks and inventions"
    )
    parser.add_argument("--write-docs", action="store_true", help="write the figures into docs/benchmarks.md")
    args = parser.parse_args()
    from tests.redocred import load_redocred

    docs = load_redocred()
    splits = ["held-out", "tuning"] if args.split == "both" else [args.split]
    results, rewrites = [], []
    for split in splits:
        lo, hi = SPLITS[split]
        rounds = [evaluate(split, docs[lo:hi], seed) for seed in range(args.seed, args.seed + args.seeds)]
        results.append(merge(rounds))
        rewrites.append(
            merge_rewrites(
                [evaluate_rewrites(split, docs[lo:hi], seed) for seed in range(args.seed, args.seed + args.seeds)],
                hi - lo,
            )
        )
        print(f"{split}: done", file=sys.stderr)
    text = report(results) + "\n\n" + report_rewrites(rewrites)
    print(text)
    if args.write_docs:
        from benchmarks.verify_speed import write_section

        write_section(
            "verify quality",
            f"`python -m benchmarks.verify_quality --seed {args.seed} --seeds {args.seeds}`\n\n{NOTE}\n\n{text}\n",
        )


if __name__ == "__main__":
    main()
