"""JSON Pointers (RFC 6901) into specs and answers, and the local `$ref`s strict mode allows."""

from __future__ import annotations


def split_pointer(pointer: str) -> list[str]:
    """ "/a/b~1c" → ["a", "b/c"]."""
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]


def escape_part(part: str) -> str:
    """One pointer segment: "~" and "/" escaped."""
    return part.replace("~", "~0").replace("/", "~1")


def resolve_ref(root: object, ref: str) -> object:
    """The schema a "#" or "#/$defs/<name>" reference names in root; None when it names nothing there."""
    if ref == "#":
        return root
    if not ref.startswith(("#/$defs/", "#/definitions/")):
        return None
    node = root
    for part in split_pointer(ref[1:]):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
