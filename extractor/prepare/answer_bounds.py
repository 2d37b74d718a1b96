"""Bounds on what a small model can repeat: array limits in the local lane's schema, repeated facts dropped at collect.

A 270M model loops on lists: it writes the same entity again and again until max_tokens cuts
the answer off, and a cut answer loses the whole document. Two bounds:
- `bounded_response_format`: local requests carry the spec's schema with `maxItems` on the
  entity and relation arrays lowered to what half of max_tokens each can hold. llama.cpp turns
  a JSON Schema into a grammar and honours minItems/maxItems (llama.cpp grammars/README.md,
  "JSON Schemas → GBNF"), so a loop closes the array instead of running to the cap. The spec's
  own maxItems, when lower, stays.
- `drop_repeats`: an answer's entities and relations listed more than once (same normalised
  name and type; same ends, type and evidence) are kept once, at collect.
"""

from __future__ import annotations

import copy
from typing import Any

from extractor.spec.json_pointer import split_pointer
from extractor.spec.schema import Spec

# Output tokens one item takes, at least, in the default spec's shape: {"name": "…", "type": "PERSON"} is
# ~12-16 tokens for Gemma's tokenizer; a relation with its evidence quote ~40-60.
ITEM_TOKENS = {"entities": 16, "relations": 48}


def bounded_response_format(spec: Spec, max_tokens: int) -> dict[str, Any]:
    """The spec's response_format with the entity and relation arrays limited to what max_tokens can hold."""
    response_format = spec.response_format()
    schema = copy.deepcopy(response_format["json_schema"]["schema"])
    for kind, mapping in (("entities", spec.entities), ("relations", spec.relations)):
        if mapping is None:
            continue
        array = _array_at(schema, split_pointer(mapping.path))
        if array is None:
            continue
        limit = max(1, max_tokens // 2 // ITEM_TOKENS[kind])
        current = array.get("maxItems")
        array["maxItems"] = limit if not isinstance(current, int) or isinstance(current, bool) else min(current, limit)
        if isinstance(array.get("minItems"), int) and array["minItems"] > array["maxItems"]:
            array["maxItems"] = array["minItems"]  # a spec that demands more items than fit keeps its demand
    return {**response_format, "json_schema": {**response_format["json_schema"], "schema": schema}}


def drop_repeats(answer: Any, spec: Spec) -> tuple[Any, int]:
    """The answer with each entity and relation listed once (first occurrence kept), and how many were dropped."""
    dropped = 0
    for mapping, key_of in ((spec.entities, _entity_key), (spec.relations, _relation_key)):
        if mapping is None:
            continue
        parts = split_pointer(mapping.path)
        holder = answer
        for part in parts[:-1]:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if not parts or not isinstance(holder, dict) or type(holder.get(parts[-1])) is not list:
            continue
        items = holder[parts[-1]]
        seen: set[Any] = set()
        kept = []
        for item in items:
            key = key_of(item, mapping)
            if key is not None and key in seen:
                continue
            if key is not None:
                seen.add(key)
            kept.append(item)
        dropped += len(items) - len(kept)
        if len(kept) != len(items):
            holder[parts[-1]] = kept
    return answer, dropped


def _array_at(schema: Any, parts: list[str]) -> dict[str, Any] | None:
    node = schema
    for part in parts:
        if not isinstance(node, dict) or not isinstance(node.get("properties"), dict):
            return None
        node = node["properties"].get(part)
    return node if isinstance(node, dict) and node.get("type") == "array" else None


def _entity_key(item: Any, mapping: Any) -> Any:
    if not isinstance(item, dict) or type(item.get(mapping.name)) is not str:
        return None
    kind = item.get(mapping.type) if mapping.type else None
    return (" ".join(item[mapping.name].casefold().split()), kind if isinstance(kind, str) else None)


def _relation_key(item: Any, mapping: Any) -> Any:
    if not isinstance(item, dict):
        return None
    fields = [item.get(f) if f else None for f in (mapping.source, mapping.type, mapping.target, mapping.evidence)]
    if not all(f is None or isinstance(f, str) for f in fields):
        return None
    return tuple(" ".join(f.casefold().split()) if f else None for f in fields)
