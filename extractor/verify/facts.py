"""An answer's entities and relations, read through the spec's grounding map without building models.

`Spec.parse_answer` builds a pydantic model per fact, which costs more than aligning the fact;
verify reads tens of facts per document over whole corpora, so it reads plain tuples here
(NamedTuples cost more to build).
Answers reaching verify were validated against the schema by collect.
"""

from __future__ import annotations

from typing import Any

from extractor.spec.json_pointer import split_pointer
from extractor.spec.schema import Spec

EntityFact = tuple[str, "str | None"]  # name, type
RelationFact = tuple[str, "str | None", str, "str | None"]  # source, type, target, evidence


class AnswerReader:
    """Reads (entities, relations) out of answers of one spec."""

    def __init__(self, spec: Spec):
        ent = spec.entities  # None: a spec whose answers name no entities (a yes/no gate)
        self._entity_path = split_pointer(ent.path) if ent else None
        self._entity_fields = (ent.name, ent.type) if ent else ("", None)
        rel = spec.relations
        self._relation_path = split_pointer(rel.path) if rel else None
        self._relation_fields = (rel.source, rel.type, rel.target, rel.evidence) if rel else None

    def read(self, answer: Any) -> tuple[list[EntityFact], list[RelationFact]]:
        """Entities with a name and relations with both ends; ValueError when the answer has another shape."""
        name, kind = self._entity_fields
        if self._entity_path is None:
            entities: list[EntityFact] = []
        elif kind:
            entities = [
                (item[name], item.get(kind))
                for item in _items(answer, self._entity_path)
                if type(item.get(name)) is str
            ]
        else:  # a null name means "no entity here"
            entities = [(item[name], None) for item in _items(answer, self._entity_path) if type(item.get(name)) is str]
        relations: list[RelationFact] = []
        if self._relation_path is not None and self._relation_fields is not None:
            source, rtype, target, evidence = self._relation_fields
            for item in _items(answer, self._relation_path):
                head, tail = item.get(source), item.get(target)
                if type(head) is not str or type(tail) is not str:
                    continue
                quote = item.get(evidence) if evidence else None
                relations.append(
                    (
                        head,
                        item.get(rtype) if rtype else None,
                        tail,
                        quote if type(quote) is str and quote and not quote.isspace() else None,
                    )
                )
        return entities, relations


def _items(answer: Any, parts: list[str]) -> list[dict[str, Any]]:
    node = answer
    for part in parts:
        if not isinstance(node, dict):
            raise ValueError(f"the answer has no object at /{'/'.join(parts)}")
        node = node.get(part)
    if node is None:
        return []
    if type(node) is not list or not all(type(item) is dict for item in node):
        raise ValueError(f"the answer's /{'/'.join(parts)} is not a list of objects")
    return node
