"""prepare, audit and the cost cap through the CLI: bad inputs listed, duplicates sent once, shards, the audit,
prices."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import orjson
import pypdf
import pytest
from typer.testing import CliRunner

from extractor.errors import BadInput
from extractor.jobs import Job, JobStore
from extractor.prepare import tokens
from extractor.prepare.isolation import MAX_SHARED, NestingIndex, audit_job, require_isolated
from extractor.prepare.requests import Prompt, RequestTemplate, build_request_line, request_template
from extractor.spec.schema import DEFAULT_SPEC_PATH, load_spec
from tests.job_fixtures import invoke

runner = CliRunner()

ADA = (
    "Ada Lovelace\n\nAda Lovelace wrote the first published algorithm for Charles Babbage's Analytical Engine"
    " in 1843.\n"
)
GRACE = (
    "Grace Hopper\n\nGrace Hopper led the team that built the first compiler, A-0, for the UNIVAC I in 1952"
    " in Philadelphia.\n"
)
ALAN = (
    "Alan Turing\n\nAlan Turing described the universal machine in 1936 and worked at Bletchley Park during the war.\n"
)


def store() -> JobStore:
    return JobStore(Path(os.environ["EXTRACTOR_JOBS_DIR"]))


def folder(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    root = tmp_path / "docs"
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def prepared(docs: Path, *args: str) -> Job:
    result = invoke("prepare", str(docs), "--json", *args)
    assert result.exit_code == 0, result.stderr
    return store().load(orjson.loads(result.stdout)["job_id"])


def request_lines(job: Job) -> list[dict]:
    return [orjson.loads(raw) for path in job.request_files() for raw in path.read_bytes().splitlines()]


def rewrite(job: Job, lines: list[dict]) -> None:
    """Tamper with a job: its request lines replaced, all in the first file."""
    for path in job.request_files():
        path.unlink()
    (job.requests_dir / "00000.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))


def blank_pdf() -> bytes:
    writer = pypdf.PdfWriter()
    writer.add_blank_page(200, 200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --- bad input: listed, never fatal ------------------------------------------------------------


def test_every_bad_input_kind_is_skipped_listed_and_exits_6(tmp_path: Path) -> None:
    docs = folder(
        tmp_path,
        {
            "good.txt": ADA,
            "empty.txt": b"",
            "binary.txt": bytes(range(256)),
            "latin1.txt": "Café in Zürich".encode("latin-1"),
            "scanned.pdf": blank_pdf(),
            "long.txt": ("word " * 600).strip() + "\n",
            "notes.docx": b"PK\x03\x04",
            "corpus.jsonl": (
                b'{"id": 1, "text": "Grace Hopper built the first compiler for the UNIVAC I in 1952."}\n{"id": 2}\n'
            ),
        },
    )
    result = invoke("prepare", str(docs), "--ctx", "1200", "--max-tokens", "100")
    assert result.exit_code == 6
    expected = [
        "binary.txt: binary file (not text) — remove it or convert it to .txt",
        'corpus.jsonl:2: missing "text" (a string) — add the document text',
        "empty.txt: empty file — remove it or add text",
        "long.txt: 3000 chars exceeds the model context (max 2100) — pass --split-long or split the file",
        "notes.docx: unsupported file type .docx — convert it to .txt, .md, .html or .pdf, or remove it",
        "scanned.pdf: scanned PDF with no text layer — OCR it first (e.g. ocrmypdf) and add the result",
    ]
    assert result.stderr.splitlines() == [f"skipped {reason}" for reason in expected]
    data = orjson.loads(invoke("status", "--json").stdout)["jobs"]
    job = store().load(data[0]["job_id"])
    assert [s["reason"] for s in job.manifest["skipped"]] == expected
    # a legacy encoding is read, not skipped, and the manifest says how
    assert [(d["path"], d["encoding"]) for d in job.documents()] == [
        ("corpus.jsonl#1", None),
        ("good.txt", "utf-8"),
        ("latin1.txt", "cp1252"),
    ]


def test_skipped_documents_are_in_the_json_summary(tmp_path: Path) -> None:
    docs = folder(tmp_path, {"good.txt": ADA, "empty.md": b""})
    result = invoke("prepare", str(docs), "--json")
    assert result.exit_code == 6
    data = orjson.loads(result.stdout)
    assert data["skipped"] == [{"path": "empty.md", "reason": "empty.md: empty file — remove it or add text"}]
    assert (data["documents"], data["requests"]) == (1, 1)


def test_nothing_usable_exits_2_naming_the_reasons(tmp_path: Path) -> None:
    docs = folder(tmp_path, {"a.txt": b"", "b.txt": b"\x00\x01", "c.txt": b"  \n", "d.txt": b""})
    result = invoke("prepare", str(docs))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: No usable documents in {docs} (a.txt: empty file — remove it or add text; "
        "b.txt: binary file (not text) — remove it or convert it to .txt; "
        "c.txt: no text (only whitespace or markup) — remove it or add text and 1 more)"
        " — add .txt, .md, .html, .pdf or .jsonl files"
    )
    assert not store().root.exists() or not list(store())


def test_duplicates_are_sent_once_and_every_path_is_recorded(tmp_path: Path) -> None:
    # Same text after normalisation: CRLF newlines and trailing spaces do not make a new document.
    docs = folder(
        tmp_path,
        {
            "a.txt": ADA,
            "copy/a.txt": ADA.replace("\n", "\r\n"),
            "z.md": ADA.replace("1843.", "1843.  "),
            "b.txt": GRACE,
        },
    )
    job = prepared(docs)
    assert len(request_lines(job)) == 2
    ada = next(d for d in job.documents() if d["path"] == "a.txt")
    assert ada["paths"] == ["a.txt", "copy/a.txt", "z.md"]
    assert job.manifest["duplicates"] == 2


def test_split_long_sends_each_part_as_its_own_request(tmp_path: Path) -> None:
    paragraphs = [(f"Paragraph {i}. " + "The engine computed Bernoulli numbers. " * 12).strip() for i in range(6)]
    docs = folder(tmp_path, {"long.txt": "\n\n".join(paragraphs) + "\n", "short.txt": ADA})
    assert invoke("prepare", str(docs), "--ctx", "1000", "--max-tokens", "100").exit_code == 6  # rejected by default
    job = prepared(docs, "--ctx", "1000", "--max-tokens", "100", "--split-long")
    parts = [d for d in job.documents() if d["path"].startswith("long.txt#part")]
    assert len(parts) >= 2 and all(d["chars"] <= 1500 for d in parts)
    texts = {line["custom_id"]: line["body"]["messages"][1]["content"] for line in request_lines(job)}
    assert len(texts) == len(job.documents())
    joined = "\n\n".join(texts[d["custom_id"]] for d in parts)
    assert joined == "\n\n".join(paragraphs)  # every part is a verbatim slice, cut on paragraph breaks
    assert all(p.startswith("Paragraph") for p in (texts[d["custom_id"]] for d in parts))
    assert invoke("audit", job.id).exit_code == 0


# --- sharding ----------------------------------------------------------------------------------


def test_shards_at_the_line_limit(tmp_path: Path) -> None:
    docs = folder(tmp_path, {f"d{i}.txt": f"Document {i}\n\n{ALAN}" for i in range(5)})
    job = prepared(docs, "--max-lines-per-file", "2")
    files = job.request_files()
    assert [p.name for p in files] == ["00000.jsonl", "00001.jsonl", "00002.jsonl"]
    assert [len(p.read_bytes().splitlines()) for p in files] == [2, 2, 1]
    assert [s["lines"] for s in job.manifest["shards"]] == [2, 2, 1]
    assert {d["shard"] for d in job.documents()} == {
        "requests/00000.jsonl",
        "requests/00001.jsonl",
        "requests/00002.jsonl",
    }
    assert {line["body"]["model"] for line in request_lines(job)} == {job.manifest["model"]}  # one model per file
    assert invoke("audit", job.id).exit_code == 0


def test_shards_at_the_byte_limit(tmp_path: Path) -> None:
    docs = folder(tmp_path, {f"d{i}.txt": f"Document {i}\n\n{ALAN}" for i in range(5)})  # lines of equal length
    size = len(prepared(docs).request_files()[0].read_bytes().splitlines()[0]) + 1
    job = prepared(docs, "--max-bytes-per-file", str(2 * size + size // 2))
    files = job.request_files()
    assert [len(p.read_bytes().splitlines()) for p in files] == [2, 2, 1]
    assert all(p.stat().st_size <= 2 * size + size // 2 for p in files)
    assert [s["bytes"] for s in job.manifest["shards"]] == [p.stat().st_size for p in files]


def test_a_line_over_the_byte_limit_is_a_usage_error(tmp_path: Path) -> None:
    docs = folder(tmp_path, {"a.txt": ADA})
    size = len(prepared(docs).request_files()[0].read_bytes())
    result = invoke("prepare", str(docs), "--max-bytes-per-file", "1000")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: a request line is {size} bytes, over the 1000-byte file limit — raise --max-bytes-per-file"
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-lines-per-file", "0", "--max-lines-per-file must be between 1 and 50000 (OpenAI's limit)"),
        ("--max-lines-per-file", "50001", "--max-lines-per-file must be between 1 and 50000 (OpenAI's limit)"),
        ("--max-bytes-per-file", "209715201", "--max-bytes-per-file must be between 1 and 209715200 (OpenAI's limit)"),
    ],
)
def test_limits_above_openais_are_refused(tmp_path: Path, option: str, value: str, message: str) -> None:
    result = invoke("prepare", str(folder(tmp_path, {"a.txt": ADA})), option, value)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: {message}"


# --- cost --------------------------------------------------------------------------------------


def test_openai_cost_is_exact_input_plus_bounded_output_at_batch_price(tmp_path: Path) -> None:
    docs = folder(tmp_path, {"a.txt": ADA, "b.txt": GRACE, "c.txt": ALAN})
    result = invoke(
        "prepare", str(docs), "--backend", "openai", "--model", "gpt-4.1-mini", "--max-tokens", "1000", "--json"
    )
    assert result.exit_code == 0, result.stderr
    data = orjson.loads(result.stdout)
    job = store().load(data["job_id"])
    counted = sum(tokens.count_request_tokens(line["body"]) for line in request_lines(job))
    assert data["input_tokens"] == counted
    # gpt-4.1-mini: $0.40 in / $1.60 out per million tokens, half price in the Batch API
    assert data["input_cost_usd"] == round(counted * 0.40 / 1e6 * 0.5, 6)
    assert data["output_cost_usd_max"] == round(3 * 1000 * 1.60 / 1e6 * 0.5, 6)
    assert data["estimated_cost_usd"] == round(data["input_cost_usd"] + data["output_cost_usd_max"], 6)
    assert {line["body"]["max_completion_tokens"] for line in request_lines(job)} == {1000}


def test_prepare_prints_documents_lines_tokens_and_both_costs(tmp_path: Path) -> None:
    docs = folder(tmp_path, {"a.txt": ADA, "b.txt": GRACE})
    result = invoke("prepare", str(docs), "--backend", "openai", "--model", "gpt-4.1-mini", "--max-tokens", "1000")
    assert result.exit_code == 0
    job = store().load(next(iter(store())).id)
    estimate = job.manifest["estimate"]
    rows = {
        line.strip("│ ").split("│")[0].strip(): line.strip("│ ").split("│")[-1].strip()
        for line in result.stdout.splitlines()
        if line.count("│") == 3
    }
    assert rows["documents"] == "2" and rows["request lines"] == "2"
    assert rows["input tokens"] == str(estimate["input_tokens"])
    assert rows["input cost"] == f"${estimate['input_cost_usd']:.4f}"
    assert rows["output cost (at most)"] == f"${estimate['output_cost_usd_max']:.4f}"
    assert rows["estimated cost"] == f"${estimate['estimated_cost_usd']:.4f} (batch price)"


def test_submit_refuses_a_job_over_max_cost(tmp_path: Path) -> None:
    docs = folder(tmp_path, {"a.txt": ADA, "b.txt": GRACE})
    job = prepared(docs, "--backend", "openai", "--model", "gpt-4.1-mini")
    e = job.manifest["estimate"]
    result = invoke("submit", "--job", job.id, "--max-cost", "0.001")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: Job {job.id}: estimated cost ${e['estimated_cost_usd']:.4f} (input ${e['input_cost_usd']:.4f}"
        f" + output up to ${e['output_cost_usd_max']:.4f}) exceeds --max-cost $0.0010"
        " — raise the cap, lower --max-tokens or prepare fewer documents"
    )
    assert store().load(job.id).state.value == "prepared"  # nothing was sent


def test_submit_refuses_max_cost_for_a_model_without_a_price(tmp_path: Path) -> None:
    job = prepared(folder(tmp_path, {"a.txt": ADA}), "--backend", "openai", "--model", "acme-llm-9")
    assert job.manifest["estimate"]["estimated_cost_usd"] is None
    result = invoke("submit", "--job", job.id, "--max-cost", "5")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: Job {job.id}: no price is known for model acme-llm-9, so --max-cost cannot be checked"
        " — drop --max-cost or pick a model in the price table"
    )


# --- the isolation audit -----------------------------------------------------------------------


@pytest.fixture
def job(tmp_path: Path) -> Job:
    return prepared(folder(tmp_path, {"a.txt": ADA, "b.txt": GRACE, "c.txt": ALAN}))


def audit_output(job: Job) -> tuple[int, list[str]]:
    result = invoke("audit", job.id)
    return result.exit_code, result.stdout.splitlines()


def test_audit_of_a_prepared_job_passes(job: Job) -> None:
    assert audit_output(job) == (0, [f"audit of {job.id}: 3 lines, 3 documents — isolated"])
    data = orjson.loads(invoke("audit", job.id, "--json").stdout)
    assert data == {
        "job_id": job.id,
        "lines": 3,
        "documents": 3,
        "ok": True,
        "problems": [],
        "unreported_problems": 0,
        "warnings": [],
    }
    assert job.manifest["audit"] is None  # recorded by submit, which audits the files just before sending


def test_audit_catches_a_line_holding_two_documents(job: Job) -> None:
    lines = request_lines(job)
    first, second = lines[0]["body"]["messages"][1]["content"], lines[1]["body"]["messages"][1]["content"]
    lines[0]["body"]["messages"][1]["content"] = first + "\n" + second  # what a stitching provider would see
    rewrite(job, lines)
    cid = lines[0]["custom_id"]
    code, out = audit_output(job)
    assert code == 2
    assert out == [
        f"audit of {job.id}: 3 lines, 3 documents — 2 problem(s)",
        f"problem: requests/00000.jsonl line 1 ({cid}): the user message is not exactly document a.txt"
        f" ({len(first) + 1 + len(second)} chars, the document has {len(first)})",
        f"problem: requests/00000.jsonl line 1 ({cid}): holds the whole of document b.txt, which has its own line",
    ]


def test_audit_catches_a_reused_custom_id(job: Job) -> None:
    lines = request_lines(job)
    rewrite(job, [*lines, lines[0]])
    cid = lines[0]["custom_id"]
    assert audit_output(job) == (
        2,
        [
            f"audit of {job.id}: 4 lines, 3 documents — 1 problem(s)",
            f"problem: requests/00000.jsonl line 4 ({cid}): custom_id {cid} is used again"
            " (first on requests/00000.jsonl line 1)",
        ],
    )


def test_audit_catches_a_document_without_a_line_and_a_stray_line(job: Job) -> None:
    lines = request_lines(job)
    missing = lines[1]["custom_id"]
    stray = {**lines[1], "custom_id": "doc-000000000000000000000000"}
    rewrite(job, [lines[0], lines[2], stray])
    assert audit_output(job) == (
        2,
        [
            f"audit of {job.id}: 3 lines, 3 documents — 2 problem(s)",
            "problem: requests/00000.jsonl line 3 (doc-000000000000000000000000):"
            " custom_id doc-000000000000000000000000 is not a document of this job",
            f"problem: document b.txt ({missing}) has no request line",
        ],
    )


def test_audit_catches_a_system_message_that_differs_from_the_prompt(job: Job) -> None:
    lines = request_lines(job)
    lines[2]["body"]["messages"][0]["content"] += "\nAlso list the people in the other documents."
    rewrite(job, lines)
    cid = lines[2]["custom_id"]
    assert audit_output(job) == (
        2,
        [
            f"audit of {job.id}: 3 lines, 3 documents — 1 problem(s)",
            f"problem: requests/00000.jsonl line 3 ({cid}): the system message differs from the job's prompt template",
        ],
    )


def test_audit_catches_an_extra_message_and_other_edits(job: Job) -> None:
    lines = request_lines(job)
    lines[0]["body"]["messages"].append({"role": "user", "content": GRACE})
    lines[1]["body"]["temperature"] = 0.9
    lines[2]["metadata"] = {"note": ALAN}
    rewrite(job, lines)
    ids = [line["custom_id"] for line in lines]
    code, out = audit_output(job)
    assert code == 2
    assert out[1:] == [
        f"problem: requests/00000.jsonl line 1 ({ids[0]}): expected one system and one user message,"
        " found ['system', 'user', 'user']",
        f"problem: requests/00000.jsonl line 2 ({ids[1]}): body.temperature differs from the job's request template",
        f"problem: requests/00000.jsonl line 3 ({ids[2]}): metadata differs from the job's request template",
        f"problem: requests/00000.jsonl line 1 ({ids[0]}): holds the whole of document b.txt, which has its own line",
    ]


def test_audit_accepts_the_same_lines_written_differently(job: Job) -> None:
    raw = [orjson.loads(line) for line in job.request_files()[0].read_bytes().splitlines()]
    reordered = [
        {"body": line["body"], "url": line["url"], "method": line["method"], "custom_id": line["custom_id"]}
        for line in raw
    ]
    (job.request_files()[0]).write_text(
        "".join(orjson.dumps(r, option=orjson.OPT_INDENT_2).decode().replace("\n", " ") + "\n" for r in reordered)
    )
    assert audit_output(job)[0] == 0


def test_audit_catches_a_cut_line(job: Job) -> None:
    path = job.request_files()[0]
    path.write_bytes(path.read_bytes()[:-40] + b"\n")
    code, out = audit_output(job)
    assert code == 2
    assert (
        out[1]
        == "problem: requests/00000.jsonl line 3: not valid JSON — the file was cut or edited; prepare the job again"
    )


def test_a_document_holding_another_is_a_warning_not_a_problem(tmp_path: Path) -> None:
    docs = folder(
        tmp_path, {"anthology.txt": "Collected profiles\n\n" + ADA + "\n" + GRACE, "grace.txt": GRACE, "alan.txt": ALAN}
    )
    result = invoke("prepare", str(docs))
    assert result.exit_code == 0
    job = next(iter(store()))
    assert audit_job(job).warnings == ["document anthology.txt contains the whole of document grace.txt"]
    assert audit_output(job) == (
        0,
        [
            f"audit of {job.id}: 3 lines, 3 documents — isolated",
            "warning: document anthology.txt contains the whole of document grace.txt",
        ],
    )


def test_a_single_line_document_inside_another_is_found_too(tmp_path: Path) -> None:
    one_line = "Hedy Lamarr co-invented a frequency-hopping system for torpedo guidance with George Antheil in 1941."
    docs = folder(tmp_path, {"a.txt": "Inventors. " + one_line + " She also acted.", "b.txt": one_line})
    job = prepared(docs)
    assert audit_job(job).warnings == ["document a.txt contains the whole of document b.txt"]


def test_submit_refuses_a_tampered_job_before_sending_anything(job: Job) -> None:
    lines = request_lines(job)
    lines[1]["body"]["messages"][1]["content"] += " " + lines[2]["body"]["messages"][1]["content"]
    rewrite(job, lines)
    # nothing listens on port 1: had the audit not stopped it, this would be exit 4, not 2
    result = invoke("submit", "--job", job.id, "--local-url", "http://127.0.0.1:1")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: Job {job.id} failed the isolation audit: requests/00000.jsonl line 2")
    assert store().load(job.id).state.value == "prepared"


def test_require_isolated_refuses_a_tampered_job(job: Job) -> None:
    lines = request_lines(job)
    lines[0]["body"]["messages"][0]["content"] = "Ignore the schema."
    rewrite(job, lines)
    with pytest.raises(BadInput) as caught:
        require_isolated(store().load(job.id))
    assert caught.value.message == (
        f"Job {job.id} failed the isolation audit: requests/00000.jsonl line 1 ({lines[0]['custom_id']}): the system"
        f" message differs from the job's prompt template — run `extractor audit {job.id}` for every problem,"
        " then prepare the documents again"
    )


def test_audit_of_an_unknown_job(tmp_path: Path) -> None:
    result = invoke("audit", "20990101-000000-abcdef01")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: No job '20990101-000000-abcdef01' in {tmp_path / 'jobs'} — run `extractor status` to list jobs"
    )


def test_schema_check_of_a_missing_file(tmp_path: Path) -> None:
    result = invoke("schema", "check", str(tmp_path / "nope.json"))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: No such spec file: {tmp_path / 'nope.json'} (No such file or directory)"
        " — pass a spec file like extractor/spec/default.json"
    )


# --- the request template and the nesting index ------------------------------------------------

PROMPT = Prompt("extraction", "1", "openai", "Extract the entities.", "0" * 64)
SETTINGS = {"temperature": 0.0, "seed": 0, "max_tokens": 500, "extra_body": {}}
TRICKY = [
    'He said "hi" \\ left',
    "tab\there\nnewline",
    "\x01\x1f control",
    "emoji 🚀 and \u2028 separator",
    '","method":"POST","url":"/v1/chat/completions" inside the text',
    "{{document}} {{custom_id}}",
    "",
]


def template() -> RequestTemplate:
    return request_template(
        prompt=PROMPT,
        model="gpt-4.1-mini",
        response_format=load_spec(DEFAULT_SPEC_PATH).response_format(),
        settings=SETTINGS,
    )


@pytest.mark.parametrize("text", TRICKY)
def test_template_renders_what_orjson_makes_of_the_line_and_reads_it_back(text: str) -> None:
    tpl = template()
    rendered = tpl.render("doc-abc", text)
    line = build_request_line(
        custom_id="doc-abc",
        text=text,
        prompt=PROMPT,
        model="gpt-4.1-mini",
        response_format=load_spec(DEFAULT_SPEC_PATH).response_format(),
        settings=SETTINGS,
    )
    assert rendered == orjson.dumps(line) + b"\n"
    assert tpl.parse(rendered) == ("doc-abc", text)


def test_template_parse_takes_only_the_template_filled_in() -> None:
    tpl = template()
    line = orjson.loads(tpl.render("doc-abc", "text"))
    assert tpl.parse(orjson.dumps({**line, "extra": 1}) + b"\n") is None
    assert tpl.parse(orjson.dumps({**line, "body": {**line["body"], "model": "gpt-4o"}}) + b"\n") is None
    assert tpl.parse(tpl.render("doc-abc", "text")[:-2] + b"\n") is None
    assert tpl.parse(tpl.render('doc-"quoted"', "text")) == ('doc-"quoted"', "text")  # the slow cut
    assert tpl.parse(tpl.render("doc-abc", "x")[:-1] + b" \n") is None


def test_template_survives_job_json_key_sorting() -> None:
    tpl = template()
    again = RequestTemplate.from_json(
        orjson.loads(orjson.dumps({"t": tpl.as_json()}, option=orjson.OPT_SORT_KEYS))["t"]
    )
    assert (again.head, again.middle, again.tail) == (tpl.head, tpl.middle, tpl.tail)


def test_a_schema_holding_a_slot_cannot_make_a_template() -> None:
    with pytest.raises(BadInput) as caught:
        request_template(prompt=PROMPT, model="m", response_format={"enum": ["{{document}}"]}, settings=SETTINGS)
    assert caught.value.message == (
        "the request template must hold {{custom_id}} once and then {{document}} once"
        " — a prompt or schema string that is exactly either cannot be used"
    )


def indexed(texts: list[str]) -> NestingIndex:
    docs = [{"sha256": hashlib.sha256(t.encode()).hexdigest(), "chars": len(t)} for t in texts]
    index = NestingIndex(docs)
    for k, text in enumerate(texts):
        index.add(text.encode(), k)
    index.finish()
    return index


def test_nesting_index_finds_whole_documents_only() -> None:
    texts = [
        ADA,
        GRACE,
        "Ada Lovelace wrote the first published algorithm for Charles Babbage's Analytical Engine.",
        "short",
    ]
    index = indexed(texts)
    assert index.held_in((ADA + GRACE).encode(), None) == [0, 1]
    assert index.held_in(ADA.encode(), 0) == []  # its own document is not a finding
    assert index.held_in(GRACE[:-5].encode(), None) == []  # most of a document is not the whole of it
    assert index.held_in(("Intro. " + texts[2] + " Outro.").encode(), None) == [2]  # no newline: start fingerprint
    assert index.held_in(b"short short short", None) == []  # shorter than a fingerprint: not looked for


def test_nesting_index_bounds_documents_sharing_a_fingerprint() -> None:
    shared = "Header line\n" + "x" * 80 + "\n"
    texts = [f"{i}\n{shared}" for i in range(MAX_SHARED + 3)]  # all share the 64 bytes after their middle newline
    index = indexed(texts)
    assert index.unchecked == 3
    assert index.held_in(("Bundle\n" + texts[0] + "tail").encode(), None) == [0]
