"""Specs: every strict-mode rule accepted and rejected, the grounding map, answers validated and parsed."""

from __future__ import annotations

import copy
import json

import pytest

from extractor.errors import BadInput
from extractor.spec.schema import (
    DEFAULT_SPEC_PATH,
    Entity,
    Problem,
    Relation,
    check_spec,
    check_strict_schema,
    load_spec,
)


def obj(properties: dict, **extra) -> dict:
    """A strict object schema: every property required, no additional properties."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **extra,
    }


def paths(schema: object) -> list[str]:
    return [p.path for p in check_strict_schema(schema)]


def messages(schema: object) -> str:
    return "\n".join(f"{p.path}: {p.message}" for p in check_strict_schema(schema))


DEFAULT = json.loads(DEFAULT_SPEC_PATH.read_text())


# --- the default spec --------------------------------------------------------------------------


def test_default_spec_passes_the_checker_and_loads():
    assert check_spec(DEFAULT) == []
    spec = load_spec(DEFAULT_SPEC_PATH)
    assert spec.name == "entities_relations"
    assert spec.entity_types() == ["PERSON", "ORGANIZATION", "LOCATION", "DATE", "NUMBER", "EVENT", "WORK", "OTHER"]
    assert "BORN_IN" in spec.relation_types()
    assert spec.source == str(DEFAULT_SPEC_PATH)
    assert spec.response_format() == {
        "type": "json_schema",
        "json_schema": {"name": "entities_relations", "strict": True, "schema": DEFAULT["schema"]},
    }


def test_spec_hash_is_of_canonical_json(tmp_path):
    reordered = tmp_path / "reordered.json"
    reordered.write_text(json.dumps(dict(reversed(list(DEFAULT.items()))), indent=4))
    assert load_spec(reordered).sha256 == load_spec(DEFAULT_SPEC_PATH).sha256
    changed = copy.deepcopy(DEFAULT)
    changed["description"] += "!"
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    assert load_spec(tmp_path / "changed.json").sha256 != load_spec(DEFAULT_SPEC_PATH).sha256


# --- root --------------------------------------------------------------------------------------


def test_root_must_be_an_object_and_not_any_of():
    assert paths(obj({"a": {"type": "string"}})) == []
    assert paths({"type": "array", "items": {"type": "string"}}) == ["/type"]
    any_of_root = {"anyOf": [obj({"a": {"type": "string"}}), obj({"b": {"type": "string"}})]}
    assert paths(any_of_root) == ["/anyOf", "/type"]
    assert paths(["not", "a", "schema"]) == ["/"]


# --- required and additionalProperties --------------------------------------------------------


def test_every_property_must_be_required_and_optional_means_nullable():
    optional = obj({"name": {"type": "string"}, "nickname": {"type": ["string", "null"]}})
    assert paths(optional) == []
    missing = obj({"name": {"type": "string"}, "nickname": {"type": "string"}})
    missing["required"] = ["name"]
    assert messages(missing) == (
        "/required: must list every property; missing nickname"
        ' — make an optional one nullable, e.g. "type": ["string", "null"]'
    )
    ghost = obj({"name": {"type": "string"}})
    ghost["required"] = ["name", "age"]
    assert messages(ghost) == "/required: names properties that do not exist: age"
    nested = obj({"inner": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": False}})
    assert paths(nested) == ["/properties/inner/required"]


def test_additional_properties_false_on_every_object():
    assert paths(obj({"inner": obj({"x": {"type": "integer"}})})) == []
    no_flag = obj({"inner": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}})
    assert (
        messages(no_flag)
        == '/properties/inner: missing "additionalProperties": false — strict mode requires it on every object'
    )
    open_obj = obj({"inner": obj({"x": {"type": "integer"}}, additionalProperties=True)})
    assert (
        messages(open_obj)
        == "/properties/inner/additionalProperties: must be false — strict mode requires it on every object"
    )
    in_array = obj({"rows": {"type": "array", "items": {"type": "object", "properties": {}, "required": []}}})
    assert paths(in_array) == ["/properties/rows/items"]
    no_props = obj({"inner": {"type": "object", "additionalProperties": False}})
    assert messages(no_props) == '/properties/inner: an object needs "properties" (an object; {} for none)'


# --- keywords ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keyword, value",
    [
        ("allOf", [{"type": "string"}]),
        ("not", {"type": "number"}),
        ("if", {"type": "string"}),
        ("then", {"type": "string"}),
        ("else", {"type": "string"}),
        ("dependentRequired", {"a": ["b"]}),
        ("dependentSchemas", {"a": {"type": "object"}}),
        ("patternProperties", {"^x": {"type": "string"}}),
        ("unevaluatedProperties", False),
        ("oneOf", [{"type": "string"}]),
        ("minProperties", 1),
        ("propertyNames", {"pattern": "^a"}),
        ("$schema", "https://json-schema.org/draft/2020-12/schema"),
    ],
)
def test_unsupported_object_keywords_are_rejected(keyword, value):
    schema = obj({"a": {"type": "string"}, "b": {"type": "string"}})
    schema[keyword] = value
    found = check_strict_schema(schema)
    assert [p.path for p in found] == [f"/{keyword}"]
    assert f'"{keyword}" is not supported in strict mode' in found[0].message


@pytest.mark.parametrize(
    "keyword, value, kind",
    [
        ("minLength", 1, "string"),
        ("maxLength", 9, "string"),
        ("default", "x", "string"),
        ("examples", ["x"], "string"),
        ("uniqueItems", True, "array"),
        ("contains", {"type": "string"}, "array"),
        ("prefixItems", [{"type": "string"}], "array"),
        ("unevaluatedItems", False, "array"),
    ],
)
def test_unsupported_value_keywords_are_rejected(keyword, value, kind):
    field = {"type": kind, keyword: value}
    if kind == "array":
        field["items"] = {"type": "string"}
    assert paths(obj({"f": field})) == [f"/properties/f/{keyword}"]


def test_supported_keywords_are_accepted():
    schema = obj(
        {
            "when": {"type": "string", "format": "date-time", "description": "d", "title": "t"},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "score": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "exclusiveMinimum": -1,
                "exclusiveMaximum": 2,
                "multipleOf": 0.5,
            },
            "count": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 5},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "fixed": {"const": "x"},
            "maybe": {"type": ["integer", "null"]},
            "flag": {"type": "boolean"},
            "either": {"anyOf": [{"type": "string"}, obj({"n": {"type": "number"}})]},
            "step": {"$ref": "#/$defs/step"},
            "legacy": {"$ref": "#/definitions/old"},
            "tree": {"type": "array", "items": {"$ref": "#"}},
        },
        **{"$defs": {"step": obj({"text": {"type": "string"}})}, "definitions": {"old": {"type": "string"}}},
    )
    assert messages(schema) == ""


@pytest.mark.parametrize("fmt", ["date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"])
def test_every_documented_string_format_is_accepted(fmt):
    assert paths(obj({"f": {"type": "string", "format": fmt}})) == []


def test_unsupported_format_and_bad_pattern_are_rejected():
    assert messages(obj({"u": {"type": "string", "format": "uri"}})).startswith(
        "/properties/u/format: unsupported format 'uri'"
    )
    assert (
        messages(obj({"p": {"type": "string", "pattern": "([a-z"}}))
        == "/properties/p/pattern: is not a valid regular expression"
    )


def test_keywords_must_fit_the_declared_type():
    assert paths(obj({"n": {"type": "number", "pattern": "^1$"}})) == ["/properties/n/pattern"]
    assert paths(obj({"s": {"type": "string", "minItems": 1}})) == ["/properties/s/minItems"]
    assert paths(obj({"s": {"type": "string", "minimum": 1}})) == ["/properties/s/minimum"]
    assert paths(obj({"s": {"type": ["string", "null"], "pattern": "^a"}})) == []
    assert paths(obj({"a": {"type": "array", "items": {"type": "string"}, "minItems": -1}})) == [
        "/properties/a/minItems"
    ]
    assert paths(obj({"a": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 2}})) == [
        "/properties/a/minItems"
    ]


def test_types_must_be_declared_and_known():
    assert messages(obj({"x": {"description": "no type"}})) == '/properties/x: missing "type" — every schema needs one'
    assert paths(obj({"x": {"type": "date"}})) == ["/properties/x/type"]
    assert paths(obj({"x": {"type": ["string", "string"]}})) == ["/properties/x/type"]
    assert paths(obj({"x": {"type": "array"}})) == ["/properties/x"]  # no items
    assert paths(obj({"x": True})) == ["/properties/x"]  # boolean schema


def test_any_of_branches_refs_and_definitions_are_checked():
    bad_branch = obj({"x": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {}}]}})
    assert messages(bad_branch) == (
        '/properties/x/anyOf/1: missing "additionalProperties": false — strict mode requires it on every object'
    )
    dangling = obj({"x": {"$ref": "#/$defs/missing"}})
    assert (
        messages(dangling) == '/properties/x/$ref: must be "#" or point at a root definition such as "#/$defs/<name>"'
    )
    nested_defs = obj({"x": {"type": "string", "$defs": {"a": {"type": "string"}}}})
    assert paths(nested_defs) == ["/properties/x/$defs"]
    bad_def = obj(
        {"x": {"$ref": "#/$defs/d"}}, **{"$defs": {"d": {"type": "object", "properties": {"a": {"type": "string"}}}}}
    )
    assert paths(bad_def) == ["/$defs/d", "/$defs/d/required"]


def test_enum_values_must_match_the_type_and_be_unique():
    assert paths(obj({"e": {"type": "string", "enum": ["a", 1]}})) == ["/properties/e/enum"]
    assert paths(obj({"e": {"type": ["string", "null"], "enum": ["a", None]}})) == []
    assert paths(obj({"e": {"type": "number", "enum": [1, 2.5]}})) == []
    assert paths(obj({"e": {"type": "string", "enum": ["a", "a"]}})) == ["/properties/e/enum"]
    assert paths(obj({"e": {"type": "string", "enum": []}})) == ["/properties/e/enum"]


# --- size limits -------------------------------------------------------------------------------


def test_at_most_5000_properties_in_all():
    def wide(total: int) -> dict:
        half = total // 2
        return obj(
            {
                "a": obj({f"p{i}": {"type": "string"} for i in range(half)}),
                "b": obj({f"q{i}": {"type": "string"} for i in range(total - half - 2)}),
            }
        )

    assert paths(wide(5000)) == []
    found = check_strict_schema(wide(5001))
    assert found == [Problem("/", "5001 object properties in all — strict mode allows at most 5000")]


def test_at_most_10_levels_of_object_nesting():
    def nested(levels: int) -> dict:
        schema = obj({"leaf": {"type": "string"}})
        for _ in range(levels - 1):
            schema = obj({"child": schema})
        return schema

    assert paths(nested(10)) == []
    found = check_strict_schema(nested(11))
    assert [p.message for p in found] == ["objects nest 11 levels deep here — strict mode allows 10"]
    assert found[0].path == "/properties" + "/child/properties" * 9 + "/child"


def test_absurdly_deep_schemas_are_reported_not_crashed_on():
    schema: dict = {"type": "string"}
    for _ in range(5000):
        schema = {"anyOf": [schema]}
    found = check_strict_schema(obj({"deep": schema}))
    assert len(found) == 1 and found[0].message.startswith("nested more than 100 schemas deep")


def test_at_most_1000_enum_values_in_all():
    def enums(total: int) -> dict:
        return obj(
            {
                "a": {"type": "integer", "enum": list(range(500))},
                "b": {"type": "integer", "enum": list(range(total - 500))},
            }
        )

    assert paths(enums(1000)) == []
    assert messages(enums(1001)) == "/: 1001 enum values in all — strict mode allows at most 1000"


def test_a_string_enum_above_250_values_holds_at_most_15000_characters():
    def big_enum(width: int) -> dict:
        return obj({"e": {"type": "string", "enum": [f"{i:03d}" + "v" * (width - 3) for i in range(251)]}})

    assert paths(big_enum(59)) == []  # 251 * 59 = 14,809 characters
    assert messages(big_enum(60)) == (
        "/properties/e/enum: 251 string values totalling 15060 characters — above 250 values strict mode allows 15000"
    )


def test_names_enum_and_const_text_total_at_most_120000_characters():
    def named(width: int) -> dict:
        return obj({f"{i:03d}" + "n" * (width - 3): {"type": "string"} for i in range(100)})

    assert paths(named(1200)) == []  # 100 names of 1,200 characters
    assert check_strict_schema(named(1201))[0].message.startswith(
        "property names, definition names, enum and const values total 120100 characters"
    )
    with_values = obj({"c": {"const": "x" * 60_000}, "e": {"type": "string", "enum": ["y" * 60_000]}})
    assert paths(with_values) == ["/"]  # 60,000 + 60,000 + the names "c" and "e"


# --- the spec envelope and the grounding map ---------------------------------------------------


def test_check_spec_reports_every_envelope_problem_at_once():
    found = check_spec({"format": "extractor.spec/2", "name": " ", "extra": 1, "schema": {"type": "array"}})
    by_path = {p.path: p.message for p in found}
    assert by_path["/extra"].startswith("unknown key")
    assert by_path["/description"] == "missing — add it (see extractor/spec/default.json)"
    assert by_path["/grounding"] == "missing — add it (see extractor/spec/default.json)"
    assert by_path["/format"] == 'must be "extractor.spec/1"'
    assert by_path["/name"] == "must be a non-empty string"
    assert "/schema/type" in by_path
    assert check_spec([1, 2]) == [
        Problem("/", "a spec must be a JSON object with format, name, description, schema and grounding")
    ]


def spec_with(grounding: dict, schema: dict | None = None) -> dict:
    spec = copy.deepcopy(DEFAULT)
    spec["grounding"] = grounding
    if schema is not None:
        spec["schema"] = schema
    return spec


def test_grounding_must_point_at_string_fields_of_an_array_of_objects():
    good = DEFAULT["grounding"]
    assert check_spec(spec_with({"entities": good["entities"]})) == []  # relations are optional
    found = check_spec(
        spec_with(
            {
                "entities": {"path": "/missing", "name": "name", "type": "type"},
                "relations": {
                    "path": "/relations",
                    "source": "src",
                    "target": "target",
                    "type": "type",
                    "evidence": "evidence",
                },
                "notes": {},
            }
        )
    )
    assert {(p.path, p.message) for p in found} == {
        ("/grounding/notes", 'unknown key — grounding has only "entities" and "relations"'),
        ("/grounding/entities/path", "the schema has no property 'missing' on the way to /missing"),
        ("/grounding/relations/source", "the items at /relations have no property 'src'"),
    }
    numeric = copy.deepcopy(DEFAULT["schema"])
    numeric["properties"]["entities"]["items"]["properties"]["type"] = {"type": "integer"}
    assert [(p.path, p.message) for p in check_spec(spec_with(good, numeric))] == [
        ("/grounding/entities/type", "/entities/type must be a string field")
    ]
    assert [p.path for p in check_spec(spec_with({"entities": {"path": "/entities"}}))] == ["/grounding/entities/name"]
    not_array = spec_with({"entities": {"path": "/entities/0", "name": "name"}})
    assert [p.path for p in check_spec(not_array)] == ["/grounding/entities/path"]


def custom_spec(tmp_path):
    """A user's own schema: nested path, $ref'd items, other field names, free-text nullable types."""
    person = obj({"full_name": {"type": "string"}, "kind": {"type": ["string", "null"]}})
    link = obj({"from": {"type": "string"}, "to": {"type": "string"}, "quote": {"type": ["string", "null"]}})
    schema = obj(
        {
            "result": obj(
                {
                    "people": {"type": "array", "items": {"$ref": "#/$defs/person"}},
                    "links": {"type": ["array", "null"], "items": link},
                }
            )
        },
        **{"$defs": {"person": person}},
    )
    spec = {
        "format": "extractor.spec/1",
        "name": "people.v2 (beta)",
        "description": "People and links.",
        "schema": schema,
        "grounding": {
            "entities": {"path": "/result/people", "name": "full_name", "type": "kind"},
            "relations": {"path": "/result/links", "source": "from", "target": "to", "type": None, "evidence": "quote"},
        },
    }
    path = tmp_path / "people.json"
    path.write_text(json.dumps(spec))
    return load_spec(path)


def test_a_custom_spec_parses_answers_through_its_grounding_map(tmp_path):
    spec = custom_spec(tmp_path)
    assert spec.entity_types() == [] and spec.relation_types() == []
    assert spec.response_format()["json_schema"]["name"] == "people_v2__beta_"
    answer = {
        "result": {
            "people": [{"full_name": "Ada", "kind": None}, {"full_name": "Bob", "kind": "PERSON"}],
            "links": [{"from": "Ada", "to": "Bob", "quote": "Ada met Bob"}],
        }
    }
    assert spec.validate_answer(answer) == []
    parsed = spec.parse_answer(answer)
    assert parsed.entities == [Entity(name="Ada", type=None), Entity(name="Bob", type="PERSON")]
    assert parsed.relations == [Relation(source="Ada", type=None, target="Bob", evidence="Ada met Bob")]
    assert spec.parse_answer({"result": {"people": [], "links": None}}).relations == []


def test_validate_answer_lists_every_error_by_path():
    spec = load_spec(DEFAULT_SPEC_PATH)
    answer = {
        "entities": [{"name": "Ada", "type": "ROBOT"}, {"name": 5, "type": "PERSON"}],
        "relations": [],
        "extra": 1,
    }
    assert spec.validate_answer(answer) == [
        "/: Additional properties are not allowed ('extra' was unexpected)",
        "/entities/0/type: 'ROBOT' is not one of"
        " ['PERSON', 'ORGANIZATION', 'LOCATION', 'DATE', 'NUMBER', 'EVENT', 'WORK', 'OTHER']",
        "/entities/1/name: 5 is not of type 'string'",
    ]
    assert spec.validate_answer("not json object") == ["/: 'not json object' is not of type 'object'"]


def test_parse_answer_reads_the_default_shape_and_rejects_malformed_answers():
    spec = load_spec(DEFAULT_SPEC_PATH)
    parsed = spec.parse_answer(
        {
            "entities": [{"name": "Marie Curie", "type": "PERSON"}, {"name": "Warsaw", "type": "LOCATION"}],
            "relations": [
                {"source": "Marie Curie", "type": "BORN_IN", "target": "Warsaw", "evidence": "born in Warsaw"}
            ],
        }
    )
    assert [(e.name, e.type) for e in parsed.entities] == [("Marie Curie", "PERSON"), ("Warsaw", "LOCATION")]
    assert [(r.source, r.type, r.target, r.evidence) for r in parsed.relations] == [
        ("Marie Curie", "BORN_IN", "Warsaw", "born in Warsaw")
    ]
    with pytest.raises(ValueError):
        spec.parse_answer({"entities": "nope", "relations": []})
    with pytest.raises(ValueError):
        spec.parse_answer({"entities": [{"name": 5, "type": "PERSON"}], "relations": []})


# --- load_spec errors --------------------------------------------------------------------------


def test_load_spec_lists_every_problem_one_per_line(tmp_path):
    bad = copy.deepcopy(DEFAULT)
    bad["schema"]["properties"]["entities"]["items"]["allOf"] = []
    del bad["schema"]["additionalProperties"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(BadInput) as caught:
        load_spec(path)
    assert caught.value.message.splitlines() == [
        f'{path}: /schema: missing "additionalProperties": false — strict mode requires it on every object',
        f'{path}: /schema/properties/entities/items/allOf: "allOf" is not supported in strict mode'
        " — merge the subschemas into one",
    ]


def test_load_spec_names_a_missing_or_broken_file(tmp_path):
    with pytest.raises(BadInput, match=r"^No such spec file: .*nope\.json"):
        load_spec(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{ not json")
    with pytest.raises(BadInput, match=r"broken\.json: not valid JSON \(.*\) — fix the syntax$"):
        load_spec(tmp_path / "broken.json")


# --- parity with what the API refuses (issue 16) -------------------------------------------------
# Each case is one the API refuses with the error quoted, or one it accepts; tests/openai_rules.py has the
# emulator's own statement of the same rules, and the last test runs both over the same schemas.


def test_ref_with_sibling_keywords_is_refused_as_the_api_does():
    """API: "$ref cannot have keywords {'description'}"."""
    schema = obj({"x": {"$ref": "#/$defs/d", "description": "the thing"}}, **{"$defs": {"d": obj({})}})
    assert messages(schema) == (
        "/properties/x/$ref: a $ref cannot have sibling keywords (description) in strict mode"
        " — move them into the definition it points at"
    )
    assert messages(obj({"x": {"$ref": "#/$defs/d"}}, **{"$defs": {"d": obj({})}})) == ""


@pytest.mark.parametrize(
    ("pattern", "what"),
    [
        ("^a(?=b)", "lookahead (?=…)"),  # API: "regex lookaround is not supported"
        ("^(?!x)", "negative lookahead (?!…)"),
        ("(?<=@)[a-z]+$", "lookbehind (?<=…)"),
        ("(?<!-)\\d+", "negative lookbehind (?<!…)"),
        ("^(a)\\1$", "a backreference (\\1…)"),
        ("^(?<w>a)\\k<w>$", "a backreference (\\k…)"),
        ("^(?P<w>a)(?P=w)$", "a backreference (?P=…)"),
    ],
)
def test_regex_lookaround_and_backreferences_are_refused(pattern, what):
    assert messages(obj({"p": {"type": "string", "pattern": pattern}})) == (
        f"/properties/p/pattern: uses {what}, which strict mode does not support — rewrite the pattern without it,"
        " or say the rule in the description"
    )


@pytest.mark.parametrize(
    "pattern", ["^\\(?=x$", "^[(?=]+$", "^\\\\1$", "^[A-Z]{2}\\d{4}$", "^(?:a|b)+$", "^(?<year>\\d{4})$"]
)
def test_escaped_lookalikes_and_plain_groups_are_accepted(pattern):
    assert messages(obj({"p": {"type": "string", "pattern": pattern}})) == ""


def test_the_checker_and_the_emulator_agree_on_what_is_refused():
    from tests.openai_rules import Refused, _check_strict

    cases = [
        obj({"x": {"$ref": "#/$defs/d", "title": "t"}}, **{"$defs": {"d": obj({})}}),
        obj({"p": {"type": "string", "pattern": "(?=a)"}}),
        obj({"p": {"type": "string", "pattern": "(a)\\1"}}),
        obj({"p": {"type": "string", "pattern": "^[a-z]+$"}}),
        obj({"x": {"$ref": "#/$defs/d"}}, **{"$defs": {"d": obj({})}}),
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": [], "additionalProperties": False},
    ]
    for schema in cases:
        try:
            _check_strict(schema, "s", "response_format", True)
            emulator_refuses = False
        except Refused:
            emulator_refuses = True
        assert bool(check_strict_schema(schema)) == emulator_refuses, schema
