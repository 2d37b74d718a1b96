"""What grounding says about one name or quote in one document: a verdict, a span, a score."""

from __future__ import annotations

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
