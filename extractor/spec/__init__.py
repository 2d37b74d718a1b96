"""The extraction specs that ship inside the package (default.json, gate.json), found with importlib.resources.

They are package data, so an installed wheel has them; a spec of the user's own is a path as before.
"""

from __future__ import annotations

import atexit
from contextlib import ExitStack
from importlib.resources import as_file, files
from pathlib import Path

BUNDLED_SPECS = ("default", "gate")

_extracted = ExitStack()  # only used when the package is imported from a zip: files live until exit
atexit.register(_extracted.close)


def bundled_spec_path(name: str) -> Path:
    """The file of a bundled spec (`default` or `gate`) as a real path, which jobs record and hash like any spec."""
    if name not in BUNDLED_SPECS:
        raise ValueError(f"no bundled spec {name!r} — there are {', '.join(BUNDLED_SPECS)}")
    resource = files(__name__).joinpath(f"{name}.json")
    if isinstance(resource, Path):
        return resource
    return _extracted.enter_context(as_file(resource))
