"""Where things live on disk, each overridable by an environment variable (tests point them all at tmp)."""

from __future__ import annotations

import os
from pathlib import Path


def jobs_dir(explicit: Path | None = None) -> Path:
    return explicit or Path(os.environ.get("EXTRACTOR_JOBS_DIR", "jobs"))


def data_dir() -> Path:
    """The embedded graph's data folder (FalkorDB persistence): $EXTRACTOR_DATA_DIR or ~/.local/share/extractor."""
    if env := os.environ.get("EXTRACTOR_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "extractor"


def graph_uri(explicit: str | None = None) -> str:
    return explicit or os.environ.get("EXTRACTOR_GRAPH_URI", "embedded")
