"""What a verdict does to its document: quarantine it, or drop the fact and keep the rest.

Defaults: a leaked fact quarantines the whole document (a leak means the answer saw another
document, so nothing in it can be trusted); an ungrounded fact is dropped from the commit.
A spec may set either in an optional top-level `"policy"` object, and flags (`--strict`,
`--leaked`, `--ungrounded`) override the spec: flag > spec > default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ACTIONS = ("quarantine", "drop")
DEFAULTS = {"leaked": "quarantine", "ungrounded": "drop"}


@dataclass(frozen=True)
class Policy:
    """Per verdict, "quarantine" or "drop"; None leaves the choice to the spec, then to DEFAULTS."""

    leaked: str | None = None
    ungrounded: str | None = None

    def __post_init__(self) -> None:
        for verdict, action in asdict(self).items():
            if action is not None and action not in ACTIONS:
                raise ValueError(f"policy {verdict}: {action!r} is not one of {', '.join(ACTIONS)}")

    @classmethod
    def strict(cls) -> Policy:
        """`--strict`: ungrounded facts quarantine their document too."""
        return cls(ungrounded="quarantine")

    def over(self, spec_policy: dict[str, str] | None) -> Policy:
        """This policy's choices, the spec's where this one has none, the defaults where neither has."""
        spec_policy = spec_policy or {}
        return Policy(
            **{
                verdict: getattr(self, verdict) or spec_policy.get(verdict) or default
                for verdict, default in DEFAULTS.items()
            }
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
