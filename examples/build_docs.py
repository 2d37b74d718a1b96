"""Write examples/docs/ from the Re-DocRED dev split in tests/data/ (run once; the output is committed)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

NO_SPACE_BEFORE = {".", ",", ";", ":", "!", "?", ")", "]", "}", "%", "'s", "'", "n't", "'re", "'ve", "'ll", "'d", "'m"}
NO_SPACE_AFTER = {"(", "[", "{", "$", "#"}


def detokenize(tokens: list[str]) -> str:
    """Join Re-DocRED tokens back into readable text (no space before punctuation, paired quotes hug their words)."""
    out: list[str] = []
    quote_open = False
    glue_next = False
    for tok in tokens:
        if tok == '"':
            if quote_open:
                out.append('"')
            else:
                out.append((" " if out else "") + '"')
                glue_next = True
            quote_open = not quote_open
            continue
        if not out or glue_next or tok in NO_SPACE_BEFORE:
            out.append(tok)
        else:
            out.append(" " + tok)
        glue_next = tok in NO_SPACE_AFTER
    return "".join(out)


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:60]


def main(source: Path, target: Path, count: int) -> None:
    docs = json.loads(source.read_text(encoding="utf-8"))
    sized = sorted(docs, key=lambda d: sum(len(t) + 1 for s in d["sents"] for t in s))
    target.mkdir(parents=True, exist_ok=True)
    for doc in sorted(sized[:count], key=lambda d: d["title"]):
        body = " ".join(detokenize(s) for s in doc["sents"])
        (target / f"{slug(doc['title'])}.txt").write_text(f"{doc['title']}\n\n{body}\n", encoding="utf-8")


if __name__ == "__main__":
    src = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).resolve().parent.parent / "tests" / "data" / "redocred-dev.json"
    )
    main(src, Path(__file__).parent / "docs", count=20)
