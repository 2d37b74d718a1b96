"""What grounding says about one name or quote in one document: a verdict, a span, a score."""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

Verdict = Literal["grounded", "fuzzy"]


class Alignment(NamedTuple):
    """Where a name or quote sits in one document, and how sure the match is.

    Immutable; a NamedTuple rather than a frozen dataclass because it is built for every
    name of every document and costs half as much to make.
    """

    verdict: Verdict | None  # None: not found in this document
    span: tuple[int, int] | None  # offsets into the original document text
    score: float  # 1.0 exact; the fuzzy score otherwise


NOT_FOUND = Alignment(None, None, 0.0)


# A name longer than this is judged ungrounded without being aligned or looked up in other documents, so
# verify's time stays linear in the size of an answer (a 160,000-character name took 120 s to align and
# minutes to build a leak automaton for). Real entity names are far shorter.
MAX_NAME_CHARS = 1000
# Control characters other than whitespace: a name holding one (a NUL) is not a name in the text, and
# normalising would drop it, grounding "Anita\0Ekberg" as "AnitaEkberg" and committing it as another node.
_HIDDEN_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


def is_alignable(name: str) -> bool:
    """Whether a name may be aligned at all (short enough, no hidden control characters)."""
    return len(name) <= MAX_NAME_CHARS and not _HIDDEN_CONTROL.search(name)
