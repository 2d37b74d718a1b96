"""Intake: every supported format, every bad-input kind, symlinks, jsonl corpora, split_long."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pypdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from extractor.errors import BadInput
from extractor.prepare.documents import Document, iter_documents, make_document, normalise_text, split_long


def collect(root: Path, **kwargs) -> tuple[dict[str, Document], dict[str, str]]:
    docs, skipped = {}, {}
    for item in iter_documents(root, **kwargs):
        if isinstance(item, Document):
            docs[item.path] = item
        else:
            skipped[item.path] = item.reason
    return docs, skipped


def pdf_bytes(*lines: str, password: str | None = None) -> bytes:
    """A one-page PDF whose text layer holds the given lines (none: a page with no text, like a scan)."""
    writer = pypdf.PdfWriter()
    page = writer.add_blank_page(612, 792)
    if lines:
        font = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
        )
        ops = " ".join(f"({line}) Tj 0 -14 Td" for line in lines)
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td {ops} ET".encode())
        page[NameObject("/Contents")] = writer._add_object(stream)
    if password:
        writer.encrypt(user_password=password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --- normalisation, txt and md ---------------------------------------------------------------


def test_normalise_text_does_exactly_the_documented_steps():
    raw = "\ufeffCafe\u0301 one  \r\ntwo\t\rthree\n\n\n\n\n\nfour \n"
    assert normalise_text(raw) == "Caf\u00e9 one\ntwo\nthree\n\n\nfour\n"
    assert normalise_text("a\n\n\nb") == "a\n\n\nb"  # two blank lines stay
    assert normalise_text("  indented\n") == "  indented\n"  # leading space is text


def test_txt_and_md_are_read_normalised_with_content_ids(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbfMarie Curie  \r\nwas born in Warsaw.\r\n")
    (tmp_path / "b.md").write_text("\n\n# Physics notes\n\nSome *markdown* stays as written.\n", encoding="utf-8")
    docs, skipped = collect(tmp_path)
    assert skipped == {}
    a, b = docs["a.txt"], docs["b.md"]
    assert a.text == "Marie Curie\nwas born in Warsaw.\n"
    assert a.sha256 == hashlib.sha256(a.text.encode()).hexdigest()
    assert a.doc_id == a.sha256[:16] and a.chars == len(a.text)
    assert a.title == "Marie Curie"
    assert b.title == "Physics notes"
    assert "Some *markdown* stays as written." in b.text


def test_title_is_clipped_and_same_text_means_same_id(tmp_path):
    (tmp_path / "long.txt").write_text("x" * 500)
    (tmp_path / "copy.txt").write_text("x" * 500)
    docs, _ = collect(tmp_path)
    assert len(docs["long.txt"].title) == 120 and docs["long.txt"].title.endswith("…")
    assert docs["long.txt"].doc_id == docs["copy.txt"].doc_id


def test_utf16_with_bom_and_utf8_sig_are_decoded(tmp_path):
    (tmp_path / "u16.txt").write_bytes("Zoë went to Kraków.\n".encode("utf-16"))
    (tmp_path / "sig.txt").write_bytes("Zoë went to Kraków.\n".encode("utf-8-sig"))
    docs, skipped = collect(tmp_path)
    assert skipped == {}
    assert docs["u16.txt"].text == docs["sig.txt"].text == "Zoë went to Kraków.\n"


# --- html --------------------------------------------------------------------------------------


def test_html_drops_scripts_styles_and_keeps_blocks_as_lines(tmp_path):
    (tmp_path / "page.html").write_text(
        "<!doctype html><html><head><title>  The   Page </title>"
        "<style>p { color: red }</style><script>var leak = 'SCRIPT TEXT';</script></head>"
        "<body><h1>Curie &amp; Langevin</h1><p>First   paragraph\n  continues <b>here</b>.</p>"
        "<noscript>NOSCRIPT TEXT</noscript><template><p>TEMPLATE TEXT</p></template>"
        "<ul><li>one</li><li>two</li></ul><p>line<br>break &eacute;t&#233; &lt;tag&gt;</p>"
        "<table><tr><td>a</td><td>b</td></tr></table><pre>  keep\n    indent</pre></body></html>",
        encoding="utf-8",
    )
    (tmp_path / "old.htm").write_text("<html><head><title>Old</title><body><p>No closing head.</p>", encoding="utf-8")
    docs, skipped = collect(tmp_path)
    assert skipped == {}
    page = docs["page.html"]
    assert page.title == "The Page"
    assert page.text == (
        "Curie & Langevin\n\nFirst paragraph continues here.\n\none\ntwo\n\nline\nbreak été <tag>\n\na b\n\n"
        "  keep\n    indent\n"
    )
    for hidden in ("SCRIPT", "NOSCRIPT", "TEMPLATE", "color: red"):
        assert hidden not in page.text
    assert docs["old.htm"].text == "No closing head.\n"


def test_html_with_no_visible_text_is_skipped(tmp_path):
    (tmp_path / "empty.html").write_text("<html><head><script>x()</script></head><body> </body></html>")
    _, skipped = collect(tmp_path)
    assert skipped == {"empty.html": "empty.html: no text (only whitespace or markup) — remove it or add text"}


# --- pdf ---------------------------------------------------------------------------------------


def test_pdf_text_layer_is_read(tmp_path):
    (tmp_path / "paper.pdf").write_bytes(pdf_bytes("Marie Curie was born in Warsaw.", "She won two Nobel prizes."))
    docs, skipped = collect(tmp_path)
    assert skipped == {}
    assert docs["paper.pdf"].text == "Marie Curie was born in Warsaw.\nShe won two Nobel prizes."
    assert docs["paper.pdf"].title == "Marie Curie was born in Warsaw."


def test_pdf_without_text_layer_encrypted_or_damaged_is_skipped(tmp_path):
    (tmp_path / "scan.pdf").write_bytes(pdf_bytes())
    (tmp_path / "locked.pdf").write_bytes(pdf_bytes("secret text", password="hunter2"))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf\n")
    docs, skipped = collect(tmp_path)
    assert docs == {}
    assert (
        skipped["scan.pdf"]
        == "scan.pdf: scanned PDF with no text layer — OCR it first (e.g. ocrmypdf) and add the result"
    )
    assert skipped["locked.pdf"].startswith("locked.pdf: encrypted PDF — remove the password")
    assert skipped["broken.pdf"].startswith("broken.pdf: not a readable PDF (")
    assert skipped["broken.pdf"].endswith("— re-export it from its source")


# --- bad input ---------------------------------------------------------------------------------


def test_every_bad_file_is_skipped_with_a_one_line_reason(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_bytes(b"  \n\n\t\n")
    (tmp_path / "nul.txt").write_bytes(b"ELF\x00\x01\x02binary")
    (tmp_path / "controls.md").write_bytes(bytes(range(1, 9)) * 50)
    (tmp_path / "latin1.txt").write_bytes("café crème".encode("latin-1"))
    (tmp_path / "notes.docx").write_bytes(b"PK\x03\x04")
    (tmp_path / "README").write_text("no extension")
    (tmp_path / "good.txt").write_text("fine")
    docs, skipped = collect(tmp_path)
    assert list(docs) == ["good.txt", "latin1.txt"]  # legacy encodings are read (see test_legacy_encodings_*)
    assert skipped == {
        "empty.txt": "empty.txt: empty file — remove it or add text",
        "blank.txt": "blank.txt: no text (only whitespace or markup) — remove it or add text",
        "nul.txt": "nul.txt: binary file (not text) — remove it or convert it to .txt",
        "controls.md": "controls.md: binary file (not text) — remove it or convert it to .txt",
        "notes.docx": "notes.docx: unsupported file type .docx — convert it to .txt, .md, .html or .pdf, or remove it",
        "README": "README: file without an extension — convert it to .txt, .md, .html or .pdf, or remove it",
    }
    assert all("\n" not in reason for reason in skipped.values())


def test_document_longer_than_max_chars_is_skipped(tmp_path):
    (tmp_path / "big.txt").write_text("a" * 101)
    (tmp_path / "ok.txt").write_text("a" * 100)
    docs, skipped = collect(tmp_path, max_chars=100)
    assert list(docs) == ["ok.txt"]
    assert skipped == {
        "big.txt": "big.txt: 101 chars exceeds the model context (max 100) — pass --split-long or split the file"
    }


def test_missing_root_or_file_root_is_bad_input(tmp_path):
    with pytest.raises(BadInput) as missing:
        list(iter_documents(tmp_path / "nope"))
    assert missing.value.message == (
        f"No such folder: {tmp_path / 'nope'} — pass a folder of .txt/.md/.html/.pdf/.jsonl documents"
    )
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(BadInput, match="No such folder"):
        next(iter_documents(tmp_path / "file.txt"))


# --- walking -----------------------------------------------------------------------------------


def test_walk_recurses_in_sorted_order_and_skips_hidden(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("bz")
    (tmp_path / "b" / "a.txt").write_text("ba")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "c.md").write_text("c")
    (tmp_path / ".hidden.txt").write_text("hidden")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config.txt").write_text("hidden")
    (tmp_path / "b" / ".DS_Store").write_bytes(b"\x00\x00")
    paths = [item.path for item in iter_documents(tmp_path)]
    assert paths == ["a.txt", "b/a.txt", "b/z.txt", "c.md"]


def test_symlinks_out_of_root_are_not_followed_and_loops_end(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside text")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "doc.txt").write_text("inside text")
    os.symlink(outside / "secret.txt", root / "leak.txt")
    os.symlink(outside, root / "leakdir")
    os.symlink(root, root / "sub" / "loop")
    os.symlink(root / "sub" / "doc.txt", root / "alias.txt")
    os.symlink(root / "missing.txt", root / "dangling.txt")
    docs, skipped = collect(root)
    assert sorted(docs) == ["alias.txt", "sub/doc.txt"]
    assert all("outside text" not in d.text for d in docs.values())
    assert skipped == {
        "dangling.txt": "dangling.txt: broken symlink — fix it or remove it",
        "leak.txt": "leak.txt: symlink to a path outside the folder — not followed; copy the file in instead",
        "leakdir": "leakdir: symlink to a path outside the folder — not followed; copy the file in instead",
        "sub/loop": "sub/loop: symlink to a folder already read — not followed (it would loop or repeat)",
    }


# --- jsonl corpora -----------------------------------------------------------------------------


def test_jsonl_corpus_yields_one_document_per_line_and_skips_bad_lines(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "corpus.jsonl").write_bytes(
        b'{"id": "d1", "text": "Marie Curie was born in Warsaw.", "title": "Curie"}\n'
        b"\n"
        b"{not json\n"
        b'{"id": 7, "text": "Seven\\r\\nlines  "}\n'
        b'["a", "list"]\n'
        b'{"text": "no id"}\n'
        b'{"id": "d2"}\n'
        b'{"id": "d1", "text": "again"}\n'
        b'{"id": "d3", "text": "   "}\n'
        b'{"id": "d4", "text": "' + b"x" * 50 + b'"}\n'
        b'{"id": "d5", "text": "caf\xe9"}\n'
    )
    docs, skipped = collect(tmp_path, max_chars=40)
    assert list(docs) == ["sub/corpus.jsonl#d1", "sub/corpus.jsonl#7"]
    assert docs["sub/corpus.jsonl#d1"].title == "Curie"
    assert docs["sub/corpus.jsonl#7"].text == "Seven\nlines"
    assert docs["sub/corpus.jsonl#7"].title == "Seven"
    where = "sub/corpus.jsonl"
    assert skipped[f"{where}:3"].startswith(f"{where}:3: not valid JSON (")
    assert skipped[f"{where}:5"] == f'{where}:5: not a JSON object — each line must be {{"id": ..., "text": ...}}'
    assert skipped[f"{where}:6"] == f'{where}:6: missing "id" (a non-empty string or integer) — add one'
    assert skipped[f"{where}:7"] == f'{where}:7: missing "text" (a string) — add the document text'
    assert skipped[f"{where}:8"] == f"{where}:8: duplicate id 'd1' (first on line 1) — give every line its own id"
    assert skipped[f"{where}:9"] == f"{where}:9 (id 'd3'): no text (only whitespace or markup) — remove it or add text"
    assert skipped[f"{where}:10"] == (
        f"{where}:10 (id 'd4'): 50 chars exceeds the model context (max 40) — pass --split-long or split the file"
    )
    assert skipped[f"{where}:11"] == f"{where}:11: not UTF-8 text — re-save the file as UTF-8"
    assert len(skipped) == 8


def test_empty_jsonl_is_skipped(tmp_path):
    (tmp_path / "none.jsonl").write_text("\n\n")
    assert collect(tmp_path)[1] == {"none.jsonl": "none.jsonl: empty file — remove it or add one JSON object per line"}


# --- split_long --------------------------------------------------------------------------------


def doc_of(text: str) -> Document:
    return make_document("long.txt", text)


def test_split_long_cuts_on_paragraphs_and_names_parts():
    paragraphs = [f"Paragraph {i} " + "word " * 15 for i in range(6)]
    parent = doc_of("\n\n".join(p.strip() for p in paragraphs) + "\n")
    parts = split_long(parent, 200)
    assert [p.doc_id for p in parts] == [f"{parent.doc_id}-p{n}" for n in range(1, len(parts) + 1)]
    assert [p.path for p in parts] == [f"long.txt#part{n}" for n in range(1, len(parts) + 1)]
    for part in parts:
        assert part.chars <= 200
        assert part.text in parent.text  # a verbatim slice: spans map back to the parent
        assert part.text.startswith("Paragraph ")  # every cut fell on a paragraph break
        assert part.sha256 == hashlib.sha256(part.text.encode()).hexdigest()
    assert "".join(parent.text.split()) == "".join("".join(p.text for p in parts).split())


def test_split_long_falls_back_to_sentences_lines_then_hard_cuts():
    sentences = doc_of("One sentence here. " * 20)
    assert all(p.text.endswith(".") and p.chars <= 50 for p in split_long(sentences, 50))
    lines = doc_of("\n".join(["no stop at all in this line"] * 10))
    assert all(p.text == "no stop at all in this line" for p in split_long(lines, 30))
    blob = doc_of("x" * 95)
    assert [p.chars for p in split_long(blob, 40)] == [40, 40, 15]


def test_split_long_leaves_a_short_document_alone():
    short = doc_of("short text")
    assert split_long(short, 100) == [short]


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("ab .\n"), min_size=1, max_size=600).filter(str.strip),
    max_chars=st.integers(min_value=1, max_value=120),
)
def test_split_long_never_exceeds_the_limit_or_loses_text(text, max_chars):
    parent = doc_of(normalise_text(text))
    parts = split_long(parent, max_chars)
    assert all(0 < p.chars <= max_chars for p in parts)
    assert "".join(parent.text.split()) == "".join("".join(p.text for p in parts).split())
    position = 0
    for part in parts:  # parts are slices of the parent, in order
        found = parent.text.find(part.text, position)
        assert found >= 0
        position = found + part.chars
