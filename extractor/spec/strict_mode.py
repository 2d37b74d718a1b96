"""OpenAI Structured Outputs strict mode: every documented rule a JSON Schema must keep, checked all at once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import cast

import orjson

from extractor.spec.json_pointer import escape_part, resolve_ref

# Limits from OpenAI's Structured Outputs guide, "Supported schemas".
MAX_PROPERTIES = 5000
MAX_DEPTH = 10  # counted in object levels: the root object is level 1
MAX_ENUM_VALUES = 1000
MAX_STRING_CHARS = 120_000  # property names + definition names + enum values + const values
LARGE_ENUM = 250
MAX_LARGE_ENUM_CHARS = 15_000
_MAX_WALK = 100  # schemas nested deeper than this are not walked further (and are far past MAX_DEPTH)

JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
STRING_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"})
_ANY_KEYWORDS = frozenset({"type", "description", "title", "enum", "const", "anyOf", "$ref", "$defs", "definitions"})
_KEYWORDS_BY_TYPE = {
    "string": frozenset({"pattern", "format"}),
    "number": frozenset({"multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"}),
    "array": frozenset({"items", "minItems", "maxItems"}),
    "object": frozenset({"properties", "required", "additionalProperties"}),
}
_KEYWORDS_BY_TYPE["integer"] = _KEYWORDS_BY_TYPE["number"]
_KEYWORD_TYPES = {kw: kind for kind, kws in _KEYWORDS_BY_TYPE.items() if kind != "integer" for kw in kws}
_UNSUPPORTED_HINTS = {
    "allOf": "merge the subschemas into one",
    "oneOf": "use anyOf instead",
    "not": "state the constraint in the description instead",
    "if": "use anyOf over the alternatives instead",
    "then": "use anyOf over the alternatives instead",
    "else": "use anyOf over the alternatives instead",
    "dependentRequired": "make every property required (nullable where optional)",
    "dependentSchemas": "make every property required (nullable where optional)",
    "patternProperties": "list every property under properties",
    "unevaluatedProperties": 'use "additionalProperties": false',
    "minLength": "use a pattern such as ^.{1,80}$ or say it in the description",
    "maxLength": "use a pattern such as ^.{1,80}$ or say it in the description",
    "default": "say it in the description",
}


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


def check_strict_schema(schema: object, base: str = "") -> list[Problem]:
    """Every way a JSON Schema breaks the documented OpenAI Structured Outputs strict-mode rules."""
    return _StrictChecker(schema, base).run()


class _StrictChecker:
    def __init__(self, root: object, base: str):
        self.root = root
        self.base = base
        self.problems: list[Problem] = []
        self.properties = 0
        self.enum_values = 0
        self.string_chars = 0
        self.walking = 0

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path or "/", message))

    def run(self) -> list[Problem]:
        root, base = self.root, self.base
        if not isinstance(root, dict):
            self.add(base, "the schema must be a JSON object")
            return self.problems
        if "anyOf" in root:
            self.add(
                f"{base}/anyOf",
                "the root must not be anyOf — make the root an object and put the alternatives in a property",
            )
        if root.get("type") != "object":
            self.add(f"{base}/type", 'the root must be "type": "object"')
        for key in ("$defs", "definitions"):
            if key in root:
                defs = root[key]
                if not isinstance(defs, dict):
                    self.add(f"{base}/{key}", "must be an object mapping names to schemas")
                    continue
                for name, sub in defs.items():
                    self.string_chars += len(name)
                    self.node(sub, f"{base}/{key}/{escape_part(name)}", 0)
        self.node(root, base, 0, is_root=True)
        if self.properties > MAX_PROPERTIES:
            self.add(base, f"{self.properties} object properties in all — strict mode allows at most {MAX_PROPERTIES}")
        if self.enum_values > MAX_ENUM_VALUES:
            self.add(base, f"{self.enum_values} enum values in all — strict mode allows at most {MAX_ENUM_VALUES}")
        if self.string_chars > MAX_STRING_CHARS:
            self.add(
                base,
                f"property names, definition names, enum and const values total {self.string_chars} characters"
                f" — strict mode allows at most {MAX_STRING_CHARS}",
            )
        return self.problems

    def node(self, schema: object, path: str, depth: int, is_root: bool = False) -> None:
        if self.walking >= _MAX_WALK:
            self.add(path, f"nested more than {_MAX_WALK} schemas deep — not checked further; flatten it")
            return
        self.walking += 1
        try:
            self.check_node(schema, path, depth, is_root)
        finally:
            self.walking -= 1

    def check_node(self, schema: object, path: str, depth: int, is_root: bool) -> None:
        if not isinstance(schema, dict):
            self.add(path, "must be a schema object (true/false schemas are not supported in strict mode)")
            return
        types = self.types(schema, path)
        for key in schema:
            self.keyword(schema, key, types, path, is_root)
        if "enum" in schema:
            self.enum(schema["enum"], types, f"{path}/enum")
        if isinstance(schema.get("const"), str):
            self.string_chars += len(schema["const"])
        if isinstance(schema.get("anyOf"), list) and not is_root:
            if not schema["anyOf"]:
                self.add(f"{path}/anyOf", "must list at least one schema")
            for i, sub in enumerate(schema["anyOf"]):
                self.node(sub, f"{path}/anyOf/{i}", depth)
        elif "anyOf" in schema and not is_root:
            self.add(f"{path}/anyOf", "must be a list of schemas")
        if "$ref" in schema:
            self.ref(schema["$ref"], f"{path}/$ref")
            siblings = sorted(set(schema) - {"$ref"})
            if siblings:
                # The API refuses it: "$ref cannot have keywords {'description'}" (Structured Outputs, strict).
                self.add(
                    f"{path}/$ref",
                    f"a $ref cannot have sibling keywords ({', '.join(siblings)}) in strict mode"
                    " — move them into the definition it points at",
                )
        if types is not None and "object" in types:
            self.object(schema, path, depth + 1)
        if types is not None and "array" in types:
            self.array(schema, path, depth)

    def types(self, schema: dict, path: str) -> set[str] | None:
        """The declared types, or None where the schema leaves them to enum/const/anyOf/$ref."""
        if "type" not in schema:
            if not any(k in schema for k in ("anyOf", "$ref", "enum", "const")):
                self.add(path, 'missing "type" — every schema needs one')
            return None
        declared = schema["type"]
        names = declared if isinstance(declared, list) else [declared]
        if not names or not all(isinstance(n, str) and n in JSON_TYPES for n in names):
            self.add(
                f"{path}/type",
                f'must be one of {", ".join(sorted(JSON_TYPES))}, or a list of them such as ["string", "null"]',
            )
            return None
        if len(set(names)) != len(names):
            self.add(f"{path}/type", "lists a type twice")
        return set(names)

    def keyword(self, schema: dict, key: str, types: set[str] | None, path: str, is_root: bool) -> None:
        where = f"{path}/{escape_part(key)}"
        if key in _UNSUPPORTED_HINTS:
            self.add(where, f'"{key}" is not supported in strict mode — {_UNSUPPORTED_HINTS[key]}')
            return
        if key in ("$defs", "definitions") and not is_root:
            self.add(where, "definitions are supported only at the root — move them to the root $defs")
            return
        kind = _KEYWORD_TYPES.get(key)
        if kind is None:
            if key not in _ANY_KEYWORDS:
                self.add(where, f'"{key}" is not supported in strict mode — remove it')
            elif key in ("description", "title") and not isinstance(schema[key], str):
                self.add(where, "must be a string")
            return
        allowed = {"number", "integer"} if kind == "number" else {kind}
        if types is not None and not types & allowed:
            self.add(
                where,
                f'"{key}" applies only to {kind} schemas, and this one is "type": '
                f"{orjson.dumps(schema['type']).decode()}",
            )
            return
        value = schema[key]
        if key == "format" and value not in STRING_FORMATS:
            self.add(where, f"unsupported format {value!r} — strict mode supports {', '.join(sorted(STRING_FORMATS))}")
        elif key == "pattern":
            try:
                re.compile(cast(str, _as_python_regex(value)))  # a non-string pattern raises TypeError here
            except (re.error, TypeError):
                self.add(where, "is not a valid regular expression")
            else:
                unsupported = unsupported_regex(value)
                if unsupported:
                    self.add(
                        where,
                        f"uses {unsupported}, which strict mode does not support — rewrite the pattern"
                        " without it, or say the rule in the description",
                    )
        elif kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            self.add(where, "must be a number")
        elif key in ("minItems", "maxItems") and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            self.add(where, "must be a non-negative integer")

    def enum(self, values: object, types: set[str] | None, path: str) -> None:
        if not isinstance(values, list) or not values:
            self.add(path, "must be a non-empty list")
            return
        self.enum_values += len(values)
        strings = [v for v in values if isinstance(v, str)]
        chars = sum(len(v) for v in strings)
        self.string_chars += chars
        if len(strings) > LARGE_ENUM and chars > MAX_LARGE_ENUM_CHARS:
            self.add(
                path,
                f"{len(strings)} string values totalling {chars} characters — above {LARGE_ENUM} values strict mode "
                f"allows {MAX_LARGE_ENUM_CHARS}",
            )
        keys = [orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in values]
        if len(set(keys)) != len(keys):
            self.add(path, "lists a value twice")
        if types is not None:
            wrong = [
                v
                for v in values
                if _json_type(v) not in types and not (_json_type(v) == "integer" and "number" in types)
            ]
            if wrong:
                self.add(path, f"values {orjson.dumps(wrong).decode()} do not match the declared type")

    def ref(self, ref: object, path: str) -> None:
        if not isinstance(ref, str) or resolve_ref(self.root, ref) is None:
            self.add(path, 'must be "#" or point at a root definition such as "#/$defs/<name>"')

    def object(self, schema: dict, path: str, level: int) -> None:
        if level == MAX_DEPTH + 1:
            self.add(path, f"objects nest {level} levels deep here — strict mode allows {MAX_DEPTH}")
        if schema.get("additionalProperties") is not False:
            message = "must be false" if "additionalProperties" in schema else 'missing "additionalProperties": false'
            self.add(
                f"{path}/additionalProperties" if "additionalProperties" in schema else path,
                f"{message} — strict mode requires it on every object",
            )
        props = schema.get("properties")
        if not isinstance(props, dict):
            self.add(path, 'an object needs "properties" (an object; {} for none)')
            props = {}
        self.properties += len(props)
        self.string_chars += sum(len(name) for name in props)
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            self.add(f"{path}/required", "must be a list of property names")
            required = []
        missing = [name for name in props if name not in required]
        if missing:
            self.add(
                f"{path}/required",
                f"must list every property; missing {', '.join(missing)} — make an optional one nullable, e.g. "
                '"type": ["string", "null"]',
            )
        unknown = [name for name in required if name not in props]
        if unknown:
            self.add(f"{path}/required", f"names properties that do not exist: {', '.join(unknown)}")
        if len(set(required)) != len(required):
            self.add(f"{path}/required", "lists a property twice")
        for name, sub in props.items():
            self.node(sub, f"{path}/properties/{escape_part(name)}", level)

    def array(self, schema: dict, path: str, depth: int) -> None:
        if "items" not in schema:
            self.add(path, 'an array needs "items" (the schema of every element)')
        else:
            self.node(schema["items"], f"{path}/items", depth)
        low, high = schema.get("minItems"), schema.get("maxItems")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            self.add(f"{path}/minItems", "is larger than maxItems")


def _as_python_regex(pattern: object) -> object:
    """A JSON Schema (ECMA-262) pattern in Python's spelling, for the validity check: named groups (?<n>…)."""
    if not isinstance(pattern, str):
        return pattern
    return re.sub(r"\\k<([A-Za-z_]\w*)>", r"(?P=\1)", re.sub(r"\(\?<([A-Za-z_]\w*)>", r"(?P<\1>", pattern))


def unsupported_regex(pattern: str) -> str | None:
    """The first regex feature strict mode refuses in a pattern: lookaround or a backreference; None if none.

    The API answers "regex lookaround is not supported" for (?=, (?!, (?<=, (?<! (Structured Outputs
    "Supported schemas": patterns are matched by a restricted engine); backreferences (\\1, \\k<name>,
    (?P=name)) likewise have no place in it. Escaped characters and character classes are skipped, so a
    literal "\\(?=" or "[(?=]" is no lookaround.
    """
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            nxt = pattern[i + 1 : i + 2]
            if not in_class and ((nxt in "123456789" and nxt) or (nxt == "k" and pattern[i + 2 : i + 3] in "<{'")):
                return f"a backreference (\\{nxt}…)"
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":  # "[]...]": a leading ] is a literal
                i += 1
        elif char == "(" and pattern.startswith("(?", i):
            for token, what in (
                ("(?=", "lookahead (?=…)"),
                ("(?!", "negative lookahead (?!…)"),
                ("(?<=", "lookbehind (?<=…)"),
                ("(?<!", "negative lookbehind (?<!…)"),
                ("(?P=", "a backreference (?P=…)"),
            ):
                if pattern.startswith(token, i):
                    return what
        i += 1
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
