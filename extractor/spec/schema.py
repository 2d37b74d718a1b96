"""Extraction specs: load one, check it against OpenAI's strict-mode rules, validate and parse answers."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from pydantic import BaseModel, ConfigDict

from extractor.errors import BadInput
from extractor.spec import bundled_spec_path
from extractor.spec.json_pointer import escape_part, resolve_ref, split_pointer
from extractor.spec.strict_mode import Problem, check_strict_schema

SPEC_FORMAT = "extractor.spec/1"
DEFAULT_SPEC_PATH = bundled_spec_path("default")

_SPEC_KEYS = ("format", "name", "description", "schema", "grounding")
# Optional: what verify does with leaked / ungrounded facts (see extractor/verify/policy.py).
_OPTIONAL_SPEC_KEYS = ("policy",)
_POLICY_ACTIONS = {"leaked": ("quarantine", "drop"), "ungrounded": ("drop", "quarantine")}


@dataclass(frozen=True)
class EntityMap:
    path: str
    name: str
    type: str | None


@dataclass(frozen=True)
class RelationMap:
    path: str
    source: str
    target: str
    type: str | None
    evidence: str | None


class Entity(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    type: str | None = None


class Relation(BaseModel):
    model_config = ConfigDict(frozen=True)
    source: str
    type: str | None = None
    target: str
    evidence: str | None = None


class ParsedAnswer(BaseModel):
    model_config = ConfigDict(frozen=True)
    entities: list[Entity]
    relations: list[Relation]


@dataclass(frozen=True)
class Spec:
    name: str
    description: str
    schema: dict
    entities: EntityMap | None  # None: "grounding": null, a spec whose answers name no entities (a gate's yes/no)
    relations: RelationMap | None
    sha256: str
    source: str
    policy: dict[str, str] | None = None

    def entity_types(self) -> list[str]:
        """The allowed entity types (the enum of the type field); [] when the type is free text."""
        if self.entities is None:
            return []
        return _field_enum(self.schema, self.entities.path, self.entities.type)

    def relation_types(self) -> list[str]:
        """The allowed relation types; [] when free text or when the spec has no relations."""
        if self.relations is None:
            return []
        return _field_enum(self.schema, self.relations.path, self.relations.type)

    @cached_property
    def _validator(self) -> jsonschema.Draft202012Validator:
        return jsonschema.Draft202012Validator(
            self.schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )

    def validate_answer(self, answer: object) -> list[str]:
        """Every way the answer breaks the schema, as "json/pointer: message"; [] when valid."""
        found = []
        for error in self._validator.iter_errors(answer):
            pointer = "".join(f"/{escape_part(str(part))}" for part in error.absolute_path) or "/"
            found.append(f"{pointer}: {error.message}")
        return sorted(found)

    def parse_answer(self, answer: dict) -> ParsedAnswer:
        """Entities and relations read through the grounding map; raises ValueError on a malformed answer."""
        if self.entities is None:
            return ParsedAnswer(entities=[], relations=[])
        entities = [
            Entity(name=item[self.entities.name], type=item.get(self.entities.type) if self.entities.type else None)
            for item in _mapped_items(answer, self.entities.path)
            if item.get(self.entities.name) is not None  # a null name means "no entity here"
        ]
        relations = []
        if self.relations is not None:
            rel = self.relations
            for item in _mapped_items(answer, rel.path):
                if item.get(rel.source) is None or item.get(rel.target) is None:
                    continue
                relations.append(
                    Relation(
                        source=item[rel.source],
                        type=item.get(rel.type) if rel.type else None,
                        target=item[rel.target],
                        evidence=item.get(rel.evidence) if rel.evidence else None,
                    )
                )
        return ParsedAnswer(entities=entities, relations=relations)

    def response_format(self) -> dict:
        """The OpenAI chat-completions response_format that makes the model answer in this schema."""
        # OpenAI allows a-z, A-Z, 0-9, _ and - in a schema name, at most 64 characters.
        name = re.sub(r"[^A-Za-z0-9_-]", "_", self.name)[:64]
        return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": self.schema}}


def read_spec_json(path: Path) -> Any:
    """The parsed JSON of a spec file; BadInput when it is missing or not JSON."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadInput(
            f"No such spec file: {path} ({exc.strerror}) — pass a spec file like extractor/spec/default.json"
        ) from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"{path}: not valid JSON ({exc}) — fix the syntax") from None


def load_spec(path: Path) -> Spec:
    """Load and check a spec file; BadInput lists every problem, one "<file>: <json path>: <message>" a line."""
    obj = read_spec_json(path)
    problems = check_spec(obj)
    if problems:
        raise BadInput("\n".join(f"{path}: {p.path}: {p.message}" for p in problems))
    grounding = obj["grounding"] or {}  # null: nothing to ground
    ent = grounding.get("entities")
    rel = grounding.get("relations")
    return Spec(
        name=obj["name"],
        description=obj["description"],
        schema=obj["schema"],
        entities=EntityMap(ent["path"], ent["name"], ent.get("type")) if ent else None,
        relations=RelationMap(rel["path"], rel["source"], rel["target"], rel.get("type"), rel.get("evidence"))
        if rel
        else None,
        # the policy only changes what verify does with answers, not the requests: it stays out of the hash
        sha256=hashlib.sha256(
            orjson.dumps({k: v for k, v in obj.items() if k != "policy"}, option=orjson.OPT_SORT_KEYS)
        ).hexdigest(),
        source=str(path),
        policy=obj.get("policy"),
    )


def check_spec(obj: object) -> list[Problem]:
    """Every problem of a spec (envelope, strict-mode schema, grounding map); never stops at the first."""
    if not isinstance(obj, dict):
        return [Problem("/", "a spec must be a JSON object with format, name, description, schema and grounding")]
    problems = []
    for key in obj:
        if key not in _SPEC_KEYS and key not in _OPTIONAL_SPEC_KEYS:
            problems.append(
                Problem(
                    f"/{escape_part(key)}",
                    f"unknown key — a spec has only {', '.join(_SPEC_KEYS + _OPTIONAL_SPEC_KEYS)}",
                )
            )
    for key in _SPEC_KEYS:
        if key not in obj:
            problems.append(Problem(f"/{key}", "missing — add it (see extractor/spec/default.json)"))
    if "format" in obj and obj["format"] != SPEC_FORMAT:
        problems.append(Problem("/format", f'must be "{SPEC_FORMAT}"'))
    if "name" in obj and not (isinstance(obj["name"], str) and obj["name"].strip()):
        problems.append(Problem("/name", "must be a non-empty string"))
    if "description" in obj and not isinstance(obj["description"], str):
        problems.append(Problem("/description", "must be a string"))
    if "schema" in obj:
        problems += check_strict_schema(obj["schema"], "/schema")
    if (
        obj.get("grounding") is not None
    ):  # an explicit null declares a spec with no entities (e.g. extractor/spec/gate.json)
        problems += _check_grounding(obj["grounding"], obj.get("schema"))
    if "policy" in obj:
        problems += _check_policy(obj["policy"])
    return problems


def _check_policy(policy: object) -> list[Problem]:
    example = '{"leaked": "quarantine", "ungrounded": "drop"}'
    if not isinstance(policy, dict):
        return [Problem("/policy", f"must be an object such as {example}")]
    problems = []
    for key, value in policy.items():
        if key not in _POLICY_ACTIONS:
            problems.append(
                Problem(f"/policy/{escape_part(key)}", 'unknown key — policy has only "leaked" and "ungrounded"')
            )
        elif value not in _POLICY_ACTIONS[key]:
            problems.append(Problem(f"/policy/{key}", f"must be {' or '.join(repr(a) for a in _POLICY_ACTIONS[key])}"))
    return problems


def _check_grounding(grounding: object, schema: object) -> list[Problem]:
    if not isinstance(grounding, dict):
        return [Problem("/grounding", 'must be an object with "entities" (and optionally "relations")')]
    problems = [
        Problem(f"/grounding/{escape_part(k)}", 'unknown key — grounding has only "entities" and "relations"')
        for k in grounding
        if k not in ("entities", "relations")
    ]
    if "entities" not in grounding:
        problems.append(
            Problem("/grounding/entities", 'missing — say where the entities are: {"path", "name", "type"}')
        )
    else:
        problems += _check_map(grounding["entities"], "/grounding/entities", schema, ("name",), ("type",))
    if grounding.get("relations") is not None:
        problems += _check_map(
            grounding["relations"], "/grounding/relations", schema, ("source", "target"), ("type", "evidence")
        )
    return problems


def _check_map(
    mapping: object, where: str, schema: object, required: tuple[str, ...], optional: tuple[str, ...]
) -> list[Problem]:
    if not isinstance(mapping, dict):
        return [Problem(where, f"must be an object with path, {', '.join(required + optional)}")]
    problems = [
        Problem(f"{where}/{escape_part(k)}", "unknown key") for k in mapping if k not in ("path", *required, *optional)
    ]
    path = mapping.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        problems.append(Problem(f"{where}/path", 'must be a JSON pointer into the answer, such as "/entities"'))
        return problems
    items, problem = _items_at(schema, path)
    for field in required + optional:
        value = mapping.get(field)
        if value is None:
            if field in required:
                problems.append(Problem(f"{where}/{field}", "missing — name the field of each item that holds it"))
            continue
        if not isinstance(value, str):
            problems.append(Problem(f"{where}/{field}", "must be a field name (a string) or null"))
        elif items is not None:
            field_schema = _resolve(schema, items.get("properties", {}).get(value))
            if field_schema is None:
                problems.append(Problem(f"{where}/{field}", f"the items at {path} have no property {value!r}"))
            elif not (isinstance(field_schema, dict) and _allows_string(schema, field_schema)):
                problems.append(Problem(f"{where}/{field}", f"{path}/{value} must be a string field"))
    if problem:
        problems.append(Problem(f"{where}/path", problem))
    return problems


def _items_at(schema: object, pointer: str) -> tuple[dict | None, str]:
    """(the item schema of the array the answer holds at pointer, "") or (None, why not)."""
    node = _resolve(schema, schema)
    for part in split_pointer(pointer):
        props = node.get("properties") if isinstance(node, dict) else None
        if not isinstance(props, dict) or part not in props:
            return None, f"the schema has no property {part!r} on the way to {pointer}"
        node = _resolve(schema, props[part])
    if not isinstance(node, dict) or "array" not in _type_set(node):
        return None, f"{pointer} must be an array of objects in the schema"
    items = _resolve(schema, node.get("items"))
    if not isinstance(items, dict) or "object" not in _type_set(items) or not isinstance(items.get("properties"), dict):
        return None, f"the items of {pointer} must be objects with properties"
    return items, ""


def _resolve(root: object, node: object) -> object:
    """Follow $ref (a few hops at most) to the schema it names."""
    for _ in range(8):
        if not isinstance(node, dict) or not isinstance(node.get("$ref"), str):
            return node
        node = resolve_ref(root, node["$ref"])
    return node


def _allows_string(root: object, schema: dict) -> bool:
    if "anyOf" in schema and isinstance(schema["anyOf"], list):
        return any(isinstance(s := _resolve(root, sub), dict) and _allows_string(root, s) for sub in schema["anyOf"])
    if "type" in schema:
        return "string" in _type_set(schema)
    values = schema.get("enum", [schema["const"]] if "const" in schema else [])
    return bool(values) and all(isinstance(v, str) for v in values)


def _type_set(schema: dict) -> set[str]:
    declared = schema.get("type")
    return {t for t in (declared if isinstance(declared, list) else [declared]) if isinstance(t, str)}


def _field_enum(schema: dict, pointer: str, field: str | None) -> list[str]:
    if field is None:
        return []
    items, _ = _items_at(schema, pointer)
    if items is None:
        return []
    field_schema = _resolve(schema, items["properties"].get(field))
    values = field_schema.get("enum") if isinstance(field_schema, dict) else None
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []


def _mapped_items(answer: object, pointer: str) -> list[dict]:
    node = answer
    for part in split_pointer(pointer):
        if not isinstance(node, dict):
            raise ValueError(f"answer has no object on the way to {pointer}")
        node = node.get(part)
    if node is None:
        return []
    if not isinstance(node, list) or not all(isinstance(item, dict) for item in node):
        raise ValueError(f"answer at {pointer} is not a list of objects")
    return node
