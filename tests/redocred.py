"""Re-DocRED (dev split) as test material: documents, their text, and gold answers in the default spec's shape."""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterable
from pathlib import Path

# The Re-DocRED dev split (MIT, tests/data/REDOCRED-LICENSE) ships with the tests, so a clone on its own runs them.
REDOCRED_PATH = Path(os.environ.get("REDOCRED_PATH", Path(__file__).resolve().parent / "data" / "redocred-dev.json"))

REDOCRED_TYPES = {
    "PER": "PERSON",
    "ORG": "ORGANIZATION",
    "LOC": "LOCATION",
    "TIME": "DATE",
    "NUM": "NUMBER",
    "MISC": "OTHER",
}
# Wikidata properties whose direction (head -> tail) matches a relation type of the default spec.
WIKIDATA_RELATIONS = {
    "P131": "LOCATED_IN",
    "P17": "LOCATED_IN",
    "P276": "LOCATED_IN",
    "P706": "LOCATED_IN",
    "P27": "CITIZEN_OF",
    "P361": "PART_OF",
    "P463": "MEMBER_OF",
    "P54": "MEMBER_OF",
    "P102": "MEMBER_OF",
    "P19": "BORN_IN",
    "P20": "DIED_IN",
    "P108": "WORKS_FOR",
    "P112": "FOUNDED_BY",
    "P159": "HEADQUARTERED_IN",
    "P26": "SPOUSE_OF",
    "P3373": "SIBLING_OF",
    "P40": "PARENT_OF",
    "P127": "OWNED_BY",
    "P1344": "PARTICIPATED_IN",
    "P585": "HAPPENED_ON",
    "P1366": "SUCCEEDED_BY",
    "P166": "AWARDED",
    "P50": "CREATED_BY",
    "P57": "CREATED_BY",
    "P86": "CREATED_BY",
    "P170": "CREATED_BY",
    "P178": "CREATED_BY",
}
MAX_ITEMS = 60  # maxItems of both arrays in extractor/spec/default.json


def load_redocred(path: Path = REDOCRED_PATH) -> list[dict]:
    """The Re-DocRED documents (title, sents, vertexSet, labels) from one JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def redocred_text(doc: dict) -> str:
    """A document's text: tokens joined with spaces, sentences joined with spaces."""
    return " ".join(" ".join(sentence) for sentence in doc["sents"])


def mention_text(doc: dict, mention: dict) -> str:
    """The mention exactly as it appears in redocred_text (its `name` differs for ~2% of mentions)."""
    start, end = mention["pos"]
    return " ".join(doc["sents"][mention["sent_id"]][start:end])


def gold_answer(doc: dict) -> dict:
    """A document's gold entities and relations in the default spec shape, every string verbatim from its text."""
    names = [mention_text(doc, cluster[0]) for cluster in doc["vertexSet"]]
    entities: list[dict] = []
    for name, cluster in zip(names, doc["vertexSet"], strict=True):
        entity = {"name": name, "type": REDOCRED_TYPES.get(cluster[0]["type"], "OTHER")}
        if entity not in entities:
            entities.append(entity)
    relations: list[dict] = []
    seen: set[tuple[str, str, str]] = set()
    for label in doc["labels"]:
        source, target = names[label["h"]], names[label["t"]]
        kind = WIKIDATA_RELATIONS.get(label["r"], "RELATED_TO")
        if source == target or (source, kind, target) in seen:
            continue
        seen.add((source, kind, target))
        sent_id = label["evidence"][0] if label["evidence"] else doc["vertexSet"][label["h"]][0]["sent_id"]
        evidence = " ".join(doc["sents"][sent_id])
        relations.append({"source": source, "type": kind, "target": target, "evidence": evidence})
    return {"entities": entities[:MAX_ITEMS], "relations": relations[:MAX_ITEMS]}


def request_text(body: dict) -> str:
    """The text of a chat request's user messages (string or content-part form)."""
    texts: list[str] = []
    for message in body.get("messages") or body.get("input") or []:  # chat completions or responses
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(part.get("text", "") for part in content if isinstance(part, dict))
    return "\n".join(texts)


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def empty_answer(body: dict) -> dict:
    """An answer with nothing found, whatever the request."""
    return {"entities": [], "relations": []}


class GoldAnswerer:
    """Answers a request with the gold annotation of the Re-DocRED document its user message holds."""

    def __init__(self, docs: Iterable[dict]):
        self._docs = {_normalise(redocred_text(doc)): doc for doc in docs}

    @classmethod
    def from_path(cls, path: Path = REDOCRED_PATH) -> GoldAnswerer:
        return cls(load_redocred(path))

    def find(self, text: str) -> dict | None:
        """The document whose text equals, or else is the longest one contained in, the given text."""
        key = _normalise(text)
        if key in self._docs:
            return self._docs[key]
        # The user message may wrap the document in a template; take the longest contained one.
        inside = [doc_text for doc_text in self._docs if doc_text and doc_text in key]
        return self._docs[max(inside, key=len)] if inside else None

    def __call__(self, body: dict) -> dict:
        doc = self.find(request_text(body))
        return gold_answer(doc) if doc is not None else empty_answer(body)


def write_documents(docs: Iterable[dict], folder: Path) -> dict[str, dict]:
    """Each document's text as folder/NN-<title>.txt; returns the Re-DocRED document by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict] = {}
    for number, doc in enumerate(docs):
        slug = "".join(c if c.isalnum() else "-" for c in doc["title"])[:40].strip("-")
        name = f"{number:02d}-{slug}.txt"
        (folder / name).write_text(redocred_text(doc) + "\n", encoding="utf-8")
        written[name] = doc
    return written
