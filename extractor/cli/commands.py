"""The command line: parse, call the core, render. Errors become one line on stderr and an exit code."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from enum import StrEnum
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from typer.core import TyperGroup

from extractor import redaction
from extractor.cli import console
from extractor.errors import ExitCode, ExtractorError, environment_problem
from extractor.job_files import BackendChoice as BackendChoiceRecord
from extractor.jobs import Job, JobStore
from extractor.lanes.submit import BackendChoice, SubmitOptions
from extractor.locations import data_dir, graph_uri, jobs_dir
from extractor.prepare.stage import prepare_job, prepare_options
from extractor.pricing import usd


class ErrorBoundary(TyperGroup):
    """The one place where errors become exit codes, around every command (and under CliRunner too).

    In the manner of httpie's `core.raw_main`: an expected error (`ExtractorError`) → one clean line and its exit
    code; an environment problem (a full disk, a permission) → one line naming where and the fix; Ctrl-C →
    `ExitCode.INTERRUPTED`; anything else → `ExitCode.UNEXPECTED`. `--debug`, read here from the root context,
    adds the traceback, written through the redacting stream. Usage errors and explicit exits are click's own.
    """

    def invoke(self, ctx: Any) -> Any:  # click's Context (typer vendors click privately)
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except ExtractorError as exc:
            _traceback_if_debug(ctx)
            console.print_error(exc.message)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            console.print_error(
                "interrupted — everything finished so far is kept; run the same command again to resume"
            )
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except Exception as exc:
            _traceback_if_debug(ctx)
            store = ctx.obj.store.root if isinstance(ctx.obj, CliContext) else "the jobs folder"
            if (problem := environment_problem(exc, somewhere=f"under {store}")) is not None:
                console.print_error(problem.message)
                raise typer.Exit(int(problem.exit_code)) from None
            console.print_error(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
            raise typer.Exit(int(ExitCode.UNEXPECTED)) from None


def secret_urls(value: Any) -> Any:
    """Option callback for --graph, --local-url and --concurrency URL=N: the passwords in them are secrets from
    here on.
    """
    for item in [value] if isinstance(value, str) else (value or ()):
        if isinstance(item, str) and "://" in item:
            redaction.register_url(item.rsplit("=", 1)[0] if item.rsplit("=", 1)[-1].isdigit() else item)
    return value


def _traceback_if_debug(ctx: typer.Context) -> None:
    if isinstance(ctx.obj, CliContext) and ctx.obj.debug:
        # Through the redacting stream: an API that echoes the key puts it in the exception's text.
        console.stderr.write(traceback.format_exc())
        console.stderr.flush()


# Help is plain text: flags read `--json`, not `--json <bool>`, and help text is never taken for markup.
app = typer.Typer(
    name="extractor",
    help="Isolated batch extraction: documents in, verified entities and relations out, into a staging graph.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=ErrorBoundary,
)
graph_app = typer.Typer(help="Inspect what the graph stores send.", no_args_is_help=True, rich_markup_mode=None)
schema_app = typer.Typer(help="Work with extraction specs.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(graph_app, name="graph")
app.add_typer(schema_app, name="schema")

EncodingOpt = Annotated[
    str | None,
    typer.Option("--encoding", help="Read every text file as this encoding (e.g. cp1252) instead of detecting it."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")]
GraphOpt = Annotated[
    str | None,
    typer.Option(
        "--graph",
        callback=secret_urls,
        help="embedded | falkordb://HOST:PORT/GRAPH | bolt://… | neo4j://… (env EXTRACTOR_GRAPH_URI)",
    ),
]
DatabaseOpt = Annotated[str | None, typer.Option("--database", help="Neo4j database name (Enterprise) for staging.")]
EffortOpt = Annotated[
    str | None,
    typer.Option(
        "--reasoning-effort",
        help="OpenAI: none | minimal | low | medium | high | xhigh, as the model allows (default: the lowest it "
        "allows).",
    ),
]
VerbosityOpt = Annotated[
    str | None, typer.Option("--verbosity", help="OpenAI gpt-5 and later: low | medium | high (default: the model's).")
]
EndpointOpt = Annotated[
    str,
    typer.Option(
        "--endpoint",
        help="OpenAI: chat (/v1/chat/completions) | responses (/v1/responses; -pro models answer only there).",
    ),
]
EnqueuedOpt = Annotated[
    int | None,
    typer.Option(
        "--max-enqueued-tokens",
        help="OpenAI: input tokens in unfinished batches at once; shards go out in waves under it (default per model, "
        "env EXTRACTOR_MAX_ENQUEUED_TOKENS).",
    ),
]


class Backend(StrEnum):
    """The lanes a job can use; `auto` picks local when its server passes a health check, else OpenAI."""

    LOCAL = "local"
    OPENAI = "openai"
    AUTO = "auto"


class Dialect(StrEnum):
    NEO4J = "neo4j"
    FALKORDB = "falkordb"


class CliContext:
    """The parsed global options, kept on the click context."""

    def __init__(self, jobs: Path, debug: bool):
        self.store = JobStore(jobs)
        self.debug = debug


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"extractor {version('extractor')}\n")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    jobs_dir_opt: Annotated[
        Path | None, typer.Option("--jobs-dir", help="Jobs folder (env EXTRACTOR_JOBS_DIR, default ./jobs).")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    _version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    ctx.obj = CliContext(jobs_dir(jobs_dir_opt), debug)


def positive(value: Any) -> Any:
    """Option callback: token budgets, costs, slot counts and times must be above zero (else a usage error, exit 2)."""
    if value is not None and value <= 0:
        raise typer.BadParameter(f"{value} is not allowed — pass a number greater than 0")
    return value


def store_of(ctx: typer.Context) -> JobStore:
    return ctx.obj.store


def emit(data: dict[str, Any], as_json: bool, render: Callable[[], None]) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(redaction.redact(data), option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
        sys.stdout.flush()
    else:
        render()


# ---------------------------------------------------------------- prepare / submit


def _check_concurrency(values: list[str] | None) -> list[str] | None:
    from extractor.errors import BadInput
    from extractor.lanes.fleet import parse_concurrency

    secret_urls(values)
    try:
        parse_concurrency(values)
    except BadInput as exc:
        raise typer.BadParameter(exc.message) from None
    return values


def _check_hedge_after(value: str | None) -> str | None:
    from extractor.errors import BadInput
    from extractor.lanes.fleet import parse_hedge_after

    try:
        parse_hedge_after(value)
    except BadInput as exc:
        raise typer.BadParameter(exc.message) from None
    return value


LocalUrlOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--local-url",
        callback=secret_urls,
        help="An external llama.cpp / OpenAI-compatible server instead of the embedded one; give it once per server "
        "of a fleet (default: $EXTRACTOR_LOCAL_URLS, comma-separated).",
    ),
]
ModelPathOpt = Annotated[
    Path | None,
    typer.Option("--model-path", help="GGUF file for the embedded server (default: Gemma 3 270M from PyPI)."),
]
SlotsOpt = Annotated[int, typer.Option("--slots", callback=positive, help="Parallel slots of the embedded server.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", callback=positive, help="CPU threads of the embedded server (default: all cores)."),
]
ConcurrencyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--concurrency",
        callback=_check_concurrency,
        help="Most requests in flight: N for every local server, URL=N for one (repeatable; default: a server's slot "
        "count from /props or /slots, else 4).",
    ),
]
HedgeOpt = Annotated[
    str | None,
    typer.Option(
        "--hedge-after",
        callback=_check_hedge_after,
        help="Resend a request waiting longer than this latency percentile (e.g. p95) to another local server; keeps "
        "the first answer. Off by default: on a paid endpoint it costs money.",
    ),
]
MaxCostOpt = Annotated[
    float | None,
    typer.Option(
        "--max-cost",
        callback=positive,
        help="Refuse to send a job estimated above this many USD (retries and doubled budgets included).",
    ),
]
HealthTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--health-timeout",
        callback=positive,
        help="--backend auto: seconds the local lane gets to pass its health check and a warm-up request.",
    ),
]


def _choose_backend(
    backend: Backend, local_url: list[str] | None, model_path: Path | None, health_timeout: float, slots: int = 4
) -> BackendChoice | None:
    """`--backend auto` decided before prepare (the prompt and the output-token field differ between the lanes)."""
    if backend is not Backend.AUTO:
        return None
    from extractor.lanes.submit import choose_backend

    choice = choose_backend(_submit_options(local_url, model_path, slots, None), health_timeout)
    console.notice(f"--backend auto chose {choice.backend}: {choice.reason}")
    return choice


def _record_choice(job: Job, choice: BackendChoice) -> BackendChoiceRecord:
    job.manifest["backend_choice"] = choice.as_dict()
    job.save()
    job.log("backend_choice", **choice.as_dict())
    return choice.as_dict()


@app.command()
def prepare(
    ctx: typer.Context,
    docs_dir: Annotated[Path, typer.Argument(help="Folder of .txt/.md/.html/.pdf/.jsonl documents.")],
    schema: Annotated[
        Path | None,
        typer.Option("--schema", help="Extraction spec (default: the bundled extractor/spec/default.json)."),
    ] = None,
    backend: Annotated[
        Backend,
        typer.Option(
            "--backend",
            help="auto: local if its server passes a health check now, else openai (said on stderr, recorded in the "
            "job).",
        ),
    ] = Backend.LOCAL,
    model: Annotated[str | None, typer.Option("--model")] = None,
    split_long: Annotated[
        bool, typer.Option("--split-long", help="Cut documents longer than the context on paragraph boundaries.")
    ] = False,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", callback=positive, help="Output token budget per answer.")
    ] = None,
    ctx_tokens: Annotated[
        int | None, typer.Option("--ctx", callback=positive, help="Model context in tokens (limits document size).")
    ] = None,
    max_lines_per_file: Annotated[
        int | None,
        typer.Option(
            "--max-lines-per-file", help="Request lines per file (default and maximum 50000, OpenAI's limit)."
        ),
    ] = None,
    max_bytes_per_file: Annotated[
        int | None,
        typer.Option(
            "--max-bytes-per-file", help="Bytes per request file (default and maximum 200 MiB, OpenAI's limit)."
        ),
    ] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option("--pipeline", help="A pipelines/*.toml file: prepare its gate job and price both stages."),
    ] = None,
    encoding: EncodingOpt = None,
    reasoning_effort: EffortOpt = None,
    verbosity: VerbosityOpt = None,
    endpoint: EndpointOpt = "chat",
    local_url: LocalUrlOpt = None,
    model_path: ModelPathOpt = None,
    health_timeout: HealthTimeoutOpt = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Build a job: one isolated request line per document, audited and priced."""
    if pipeline is not None:
        from extractor.run.gated import prepare_gated
        from extractor.run.pipeline_file import load_pipeline

        data = prepare_gated(store_of(ctx), docs_dir, load_pipeline(pipeline))
        emit(data, as_json, lambda: _render_prepare_gated(data))
        return
    choice = _choose_backend(backend, local_url, model_path, health_timeout)
    options = prepare_options(
        choice.backend if choice else backend.value,
        model,
        schema,
        split_long,
        max_tokens,
        ctx_tokens,
        max_lines_per_file=max_lines_per_file,
        max_bytes_per_file=max_bytes_per_file,
        encoding=encoding,
        reasoning_effort=reasoning_effort,
        verbosity=verbosity,
        endpoint=endpoint,
    )
    summary = prepare_job(store_of(ctx), docs_dir, options)
    data = summary.as_dict()
    if choice:
        data["backend_choice"] = _record_choice(summary.job, choice)
    emit(data, as_json, lambda: _render_prepare(data))
    if summary.exit_code:
        raise typer.Exit(int(summary.exit_code))


def _render_prepare_gated(data: dict[str, Any]) -> None:
    gate, extract = data["gate"], data["extract"]
    _render_prepare(gate)
    console.out.print(
        console.key_value_table(
            f"pipeline {data['pipeline']}: estimate of both stages",
            {
                "gate job": gate["job_id"],
                "extraction": f"{extract['model']} ({extract['backend']}), {extract['documents']} documents at most",
                "extraction cost (upper bound)": usd(extract["estimated_cost_usd_max"]),
                "total (upper bound)": usd(data["estimated_cost_usd"]),
            },
        )
    )


def _render_prepare(data: dict[str, Any]) -> None:
    from extractor.lanes import describe

    console.out.print(
        console.key_value_table(
            f"prepared job {data['job_id']}",
            {
                "model": f"{data['model']} ({data['backend']})",
                "documents": data["documents"],
                "request lines": data["requests"],
                "request files": data["shards"],
                "duplicates": data["duplicates"],
                "skipped": len(data["skipped"]),
                "input tokens": "not counted" if data["input_tokens"] is None else data["input_tokens"],
                "input cost": usd(data["input_cost_usd"]),
                "output cost (at most)": usd(data["output_cost_usd_max"]),
                "estimated cost": usd(data["estimated_cost_usd"])
                + (" (batch price)" if describe(data["backend"]).is_batch else ""),
            },
        )
    )
    for item in data["skipped"]:
        console.err.print(f"skipped {item['reason']}", markup=False, highlight=False, soft_wrap=True)
    for warning in data["warnings"]:
        console.err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)


def _submit_options(
    local_url, model_path, slots, max_cost, threads=None, concurrency=None, max_enqueued_tokens=None, hedge_after=None
) -> SubmitOptions:
    return SubmitOptions(
        local_url=local_url,
        model_path=model_path,
        slots=slots,
        max_cost=max_cost,
        threads=threads,
        concurrency=concurrency,
        hedge_after=hedge_after,
        notice=console.notice,
        max_enqueued_tokens=max_enqueued_tokens,
    )


@app.command()
def submit(
    ctx: typer.Context,
    docs_dir: Annotated[Path | None, typer.Argument(help="Prepare this folder first.")] = None,
    job_id: Annotated[str | None, typer.Option("--job", help="Submit an already prepared job.")] = None,
    backend: Annotated[
        Backend, typer.Option("--backend", help="auto: local if its server passes a health check, else openai.")
    ] = Backend.LOCAL,
    model: Annotated[str | None, typer.Option("--model")] = None,
    schema: Annotated[Path | None, typer.Option("--schema")] = None,
    local_url: LocalUrlOpt = None,
    model_path: ModelPathOpt = None,
    slots: SlotsOpt = 4,
    threads: ThreadsOpt = None,
    concurrency: ConcurrencyOpt = None,
    hedge_after: HedgeOpt = None,
    max_cost: MaxCostOpt = None,
    health_timeout: HealthTimeoutOpt = 60.0,
    encoding: EncodingOpt = None,
    reasoning_effort: EffortOpt = None,
    verbosity: VerbosityOpt = None,
    endpoint: EndpointOpt = "chat",
    max_enqueued_tokens: EnqueuedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a job's lines to its backend (prepares DOCS_DIR first if given)."""
    from extractor.lanes.submit import submit_job

    store = store_of(ctx)
    if (docs_dir is None) == (job_id is None):
        from extractor.errors import BadInput

        raise BadInput("pass either DOCS_DIR or --job ID")
    if job_id:
        job = store.load(job_id)
        prepared: dict[str, Any] = {}
    else:
        assert docs_dir is not None  # one of the two, checked above
        choice = _choose_backend(backend, local_url, model_path, health_timeout, slots)
        summary = prepare_job(
            store,
            docs_dir,
            prepare_options(
                choice.backend if choice else backend.value,
                model,
                schema,
                False,
                None,
                None,
                encoding=encoding,
                reasoning_effort=reasoning_effort,
                verbosity=verbosity,
                endpoint=endpoint,
            ),
        )
        job, prepared = summary.job, summary.as_dict()
        if choice:
            prepared["backend_choice"] = _record_choice(job, choice)
    with console.RichProgress().stage("submit", sum(s["lines"] for s in job.manifest["shards"])) as tick:
        result = submit_job(
            job,
            _submit_options(
                local_url, model_path, slots, max_cost, threads, concurrency, max_enqueued_tokens, hedge_after
            ),
            progress=tick,
        )
    data = {**prepared, **result, "job_id": job.id, "state": job.state.value}
    emit(data, as_json, lambda: console.out.print(console.key_value_table(f"submitted job {job.id}", data)))


# ---------------------------------------------------------------- status / collect / retry / cancel


@app.command()
def status(
    ctx: typer.Context, job_id: Annotated[str | None, typer.Argument()] = None, as_json: JsonOpt = False
) -> None:
    """One job in detail, or every job as a table."""
    from extractor.reports.status import job_status, jobs_table

    store = store_of(ctx)
    if job_id:
        job = store.load(job_id)
        remote = _remote_progress(job)
        data = {**job_status(job), **remote}
        emit(data, as_json, lambda: _render_status(job_id, data))
        return
    from extractor.reports.status import lock_holder

    rows = jobs_table(store)
    running = lock_holder(store.root)
    damaged = store.damaged()

    def render() -> None:
        console.out.print(
            console.rows_table(
                f"jobs in {store.root}",
                ["job", "state", "backend", "model", "documents", "created"],
                [[r["job_id"], r["state"], r["backend"], r["model"], r["documents"], r["created_at"]] for r in rows]
                + [[d["job_id"], "damaged", "", "", "", ""] for d in damaged],
            )
        )
        if running:
            console.out.print(
                f"a run is in progress: pid {running['pid']}, started {running['started_at']}", markup=False
            )
        for d in damaged:
            console.err.print(
                f"damaged: {d['file']}: {d['problem']} — {d['fix']}", markup=False, highlight=False, soft_wrap=True
            )

    emit({"jobs": rows, "running": running, "damaged": damaged}, as_json, render)


def _render_status(job_id: str, data: dict[str, Any]) -> None:
    from extractor.reports.status import SERVER_COLUMNS, server_rows

    console.out.print(console.key_value_table(f"job {job_id}", {k: v for k, v in data.items() if k != "servers"}))
    if data.get("servers"):
        console.out.print(
            console.rows_table("local servers (latest run)", list(SERVER_COLUMNS), server_rows(data["servers"]))
        )


def _remote_progress(job: Any) -> dict[str, Any]:
    """What the job's lane knows of its requests (a batch lane's batches, looked at once)."""
    from extractor.lanes import lane_for

    return lane_for(job).progress(job)


@app.command()
def collect(
    ctx: typer.Context,
    job_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for remote batches to finish.")] = False,
    output_file: Annotated[
        Path | None, typer.Option("--output-file", help="Ingest a batch output file obtained elsewhere.")
    ] = None,
    error_file: Annotated[
        Path | None, typer.Option("--error-file", help="Ingest a batch error file obtained elsewhere.")
    ] = None,
    poll_interval: Annotated[
        float,
        typer.Option(
            "--poll-interval", callback=positive, help="With --wait: seconds between the first polls (grows to 5 min)."
        ),
    ] = 10.0,
    wait_timeout: Annotated[
        float | None,
        typer.Option(
            "--wait-timeout",
            callback=positive,
            help="With --wait: give up after this many seconds (the job stays collectable).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch results and classify one outcome per document."""
    from extractor.collect.ingest import ingest_files
    from extractor.collect.results import collect_job
    from extractor.lanes import WaitOptions, lane_for

    job = store_of(ctx).load(job_id)
    ingested = bool(output_file or error_file)
    if ingested:
        ingest_files(job, output_file, error_file)
    wait_options = WaitOptions(
        wait=wait, poll_interval_s=poll_interval, max_interval_s=max(poll_interval, 300.0), timeout_s=wait_timeout
    )
    lane = lane_for(job)
    with console.RichProgress().stage("collect", lane.pending(job) or None) as tick:
        summary = collect_job(job, None if ingested else lane, wait=wait_options, progress=tick)
    data = summary.as_dict()
    emit(data, as_json, lambda: console.out.print(console.key_value_table(f"collected job {job_id}", data["outcomes"])))
    for warning in summary.warnings:
        console.err.print(f"warning: {console.one_line(warning)}", markup=False, highlight=False, soft_wrap=True)
    if summary.exit_code:
        raise typer.Exit(int(summary.exit_code))


@app.command()
def retry(
    ctx: typer.Context,
    job_id: str,
    local_url: LocalUrlOpt = None,
    model_path: ModelPathOpt = None,
    slots: SlotsOpt = 4,
    threads: ThreadsOpt = None,
    concurrency: ConcurrencyOpt = None,
    hedge_after: HedgeOpt = None,
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", callback=positive, help="Tries per document, the first included.")
    ] = 2,
    max_cost: MaxCostOpt = None,
    max_enqueued_tokens: EnqueuedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Resend failed, expired, truncated or missing lines only."""
    from extractor.lanes.retry import retry_job

    job = store_of(ctx).load(job_id)
    with console.RichProgress().stage("retry", None) as tick:
        data = retry_job(
            job,
            _submit_options(
                local_url, model_path, slots, max_cost, threads, concurrency, max_enqueued_tokens, hedge_after
            ),
            max_attempts=max_attempts,
            progress=tick,
        )
    emit(data, as_json, lambda: console.out.print(console.key_value_table(f"retried job {job_id}", data)))


@app.command()
def cancel(ctx: typer.Context, job_id: str, as_json: JsonOpt = False) -> None:
    """Cancel a job's remote batches; what finished is kept."""
    from extractor.lanes.retry import cancel_job

    data = cancel_job(store_of(ctx).load(job_id))
    emit(data, as_json, lambda: console.out.print(console.key_value_table(f"cancelled job {job_id}", data)))


# ---------------------------------------------------------------- verify / commit / rollback


@app.command()
def verify(
    ctx: typer.Context,
    job_id: str,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write the review page (see `extractor review`); on a committed or rolled-back job, only the "
            "page.",
        ),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Quarantine documents with ungrounded facts too.")] = False,
    leaked: Annotated[
        str | None, typer.Option("--leaked", help="What a leaked fact does: quarantine (default) | drop.")
    ] = None,
    ungrounded: Annotated[
        str | None, typer.Option("--ungrounded", help="What an ungrounded fact does: drop (default) | quarantine.")
    ] = None,
    against: Annotated[
        list[str] | None,
        typer.Option(
            "--against", help="A folder of documents or another job to look for leak sources in too (repeatable)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Match every entity and relation to its own document; exit 3 when any document is quarantined."""
    from extractor.errors import BadInput
    from extractor.verify.corpus import resolve_against
    from extractor.verify.verdicts import Policy, verify_job

    store = store_of(ctx)
    job = store.load(job_id)
    if html and job.state.value in ("committed", "rolled_back"):
        return _review_settled(job, html, as_json)  # verdicts are settled once committed: the page only
    if strict and ungrounded not in (None, "quarantine"):
        raise BadInput("--strict means --ungrounded quarantine — pass one or the other")
    try:
        policy = Policy(leaked=leaked, ungrounded="quarantine" if strict else ungrounded)
    except ValueError as exc:
        raise BadInput(f"{exc} — use quarantine or drop") from None
    corpora = [resolve_against(store, ref) for ref in against or []]
    with console.RichProgress().stage("verify", None):
        report = verify_job(job, policy=policy, against=corpora)
    if html:
        from extractor.review import write_review

        write_review(job, html)
    data = {
        "job_id": job.id,
        "summary": report["summary"],
        "policy": report["policy"],
        "verify_file": str(job.verify_path),
    }
    if html:
        data["html_file"] = str(html)

    def render() -> None:
        s = report["summary"]
        verdicts = ("grounded", "fuzzy", "leaked", "ungrounded")
        console.err.print(
            console.rows_table(
                f"verified job {job.id}: {s['documents']} documents — {s['clean']} clean, {s['quarantined']} "
                f"quarantined, {s['failed']} failed",
                ["facts", *verdicts],
                [[kind, *(s[kind][v] for v in verdicts)] for kind in ("entities", "relations")],
            )
        )
        if s["quarantined"]:
            console.err.print(
                f"quarantined documents and why: {job.verify_path}" + (f" (and {html})" if html else ""),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    emit(data, as_json, render)
    if report["summary"]["quarantined"]:
        raise typer.Exit(int(ExitCode.QUARANTINED))


def _review_settled(job: Any, html: Path, as_json: bool) -> None:
    from extractor.review import write_review

    page = write_review(job, html)
    console.err.print(
        f"job {job.id} is {job.state.value}: its verdicts stay as verified; wrote the page {html}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    emit(
        {
            "job_id": job.id,
            "summary": page["summary"],
            "policy": page["policy"],
            "verify_file": str(job.verify_path),
            "html_file": str(html),
        },
        as_json,
        lambda: None,
    )
    if page["summary"]["quarantined"]:
        raise typer.Exit(int(ExitCode.QUARANTINED))


@app.command()
def review(
    ctx: typer.Context,
    job_id: str,
    html: Annotated[
        Path | None, typer.Option("--html", help="Where to write the page (default ./review-JOB.html).")
    ] = None,
    open_page: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write the review page of a job from verified on (committed and rolled back too); changes nothing in the job."""
    from extractor.review import write_review

    job = store_of(ctx).load(job_id)
    path = html or Path(f"review-{job.id}.html")
    page = write_review(job, path)
    data = {"job_id": job.id, "state": page["state"], "summary": page["summary"], "html_file": str(path)}
    emit(data, as_json, lambda: console.out.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True))
    if open_page:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


@app.command()
def commit(
    ctx: typer.Context,
    job_id: str,
    graph: GraphOpt = None,
    database: DatabaseOpt = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            "--chunk-size", min=1, help="Documents per transaction (default 500; a resumed commit keeps its own)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a verified job's clean documents to the staging graph."""
    from extractor.graph.publishing import commit_stage

    job = store_of(ctx).load(job_id)
    with console.RichProgress().stage("commit", job.manifest.get("verify", {}).get("clean")) as tick:
        data = commit_stage(
            job, uri=graph_uri(graph), database=database, data_dir=data_dir(), progress=tick, chunk_size=chunk_size
        )
    emit(data, as_json, lambda: console.out.print(console.key_value_table(f"committed job {job_id}", data)))


@app.command()
def rollback(
    ctx: typer.Context, job_id: str, graph: GraphOpt = None, database: DatabaseOpt = None, as_json: JsonOpt = False
) -> None:
    """Remove exactly what a job wrote to the graph."""
    from extractor.graph.publishing import rollback_stage

    job = store_of(ctx).load(job_id)
    data = rollback_stage(job, uri=graph_uri(graph), database=database, data_dir=data_dir())
    emit(data, as_json, lambda: console.out.print(console.key_value_table(f"rolled back job {job_id}", data)))


# ---------------------------------------------------------------- run


@app.command()
def run(
    ctx: typer.Context,
    docs_dir: Annotated[Path, typer.Argument(help="Folder of documents.")],
    schema: Annotated[Path | None, typer.Option("--schema")] = None,
    backend: Annotated[
        Backend,
        typer.Option(
            "--backend",
            help="auto: local if its server passes a health check, else openai (an OpenAI job with batches in flight "
            "is continued).",
        ),
    ] = Backend.LOCAL,
    model: Annotated[str | None, typer.Option("--model")] = None,
    local_url: LocalUrlOpt = None,
    model_path: ModelPathOpt = None,
    slots: SlotsOpt = 4,
    threads: ThreadsOpt = None,
    concurrency: ConcurrencyOpt = None,
    hedge_after: HedgeOpt = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", callback=positive, help="Output token budget per answer.")
    ] = None,
    max_cost: MaxCostOpt = None,
    graph: GraphOpt = None,
    database: DatabaseOpt = None,
    no_commit: Annotated[bool, typer.Option("--no-commit", help="Stop after verify.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Quarantine documents with ungrounded facts too.")] = False,
    retry: Annotated[
        bool, typer.Option("--retry", help="Resend failed, expired, truncated or missing lines before verifying.")
    ] = False,
    max_attempts: Annotated[
        int,
        typer.Option("--max-attempts", callback=positive, help="With --retry: tries per document, the first included."),
    ] = 2,
    wait_timeout: Annotated[
        float | None,
        typer.Option(
            "--wait-timeout",
            callback=positive,
            help="Seconds to wait for OpenAI batches (default: until they end); when it runs out the run exits 6 and "
            "the next run resumes waiting.",
        ),
    ] = None,
    poll_interval: Annotated[
        float,
        typer.Option(
            "--poll-interval",
            callback=positive,
            help="Seconds between the first polls of OpenAI batches (grows to 5 min).",
        ),
    ] = 10.0,
    health_timeout: HealthTimeoutOpt = 60.0,
    pipeline: Annotated[
        Path | None,
        typer.Option(
            "--pipeline",
            help="A pipeline file (pipelines/*.toml): a cheap yes/no gate job first, then extraction of the documents "
            "that pass.",
        ),
    ] = None,
    encoding: EncodingOpt = None,
    reasoning_effort: EffortOpt = None,
    verbosity: VerbosityOpt = None,
    endpoint: EndpointOpt = "chat",
    max_enqueued_tokens: EnqueuedOpt = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the review page of the job to this file once it is verified.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """prepare → submit → wait → collect → retry → verify → commit, resumable, for cron (exit 5 if another run holds the
    lock).
    """
    if pipeline is not None:  # each stage's backend, model and spec come from the file (extractor/run/gated.py)
        from extractor.cli.gate_view import run_gated_cli

        if html is not None:
            from extractor.errors import BadInput

            raise BadInput(
                "--html cannot be combined with --pipeline — write the page of the extraction job "
                "with `extractor review JOB --html FILE`"
            )

        gated_exit = run_gated_cli(store_of(ctx), {**locals(), "backend": backend.value})
        if gated_exit:
            raise typer.Exit(int(gated_exit))
        return
    from extractor.run.engine import RunOptions, run_pipeline

    options = RunOptions(
        # auto: run_pipeline chooses the lane (RunOptions.auto) and replaces this backend before prepare
        prepare=prepare_options(
            "local" if backend is Backend.AUTO else backend.value,
            model,
            schema,
            False,
            max_tokens,
            None,
            encoding=encoding,
            reasoning_effort=reasoning_effort,
            verbosity=verbosity,
            endpoint=endpoint,
        ),
        submit=_submit_options(
            local_url, model_path, slots, max_cost, threads, concurrency, max_enqueued_tokens, hedge_after
        ),
        graph_uri=graph_uri(graph),
        database=database,
        data_dir=data_dir(),
        commit=not no_commit,
        strict=strict,
        auto=backend is Backend.AUTO,
        health_timeout_s=health_timeout,
        wait_timeout_s=wait_timeout,
        poll_interval_s=poll_interval,
        retry=retry,
        max_attempts=max_attempts,
    )
    report = run_pipeline(store_of(ctx), docs_dir, options, console.RichProgress())
    data = report.as_dict()
    if html:
        data["html_file"] = _run_review_page(store_of(ctx), report.job_id, html)

    def render() -> None:
        console.out.print(console.run_summary_table(data))
        if report.up_to_date:
            console.out.print(f"Up to date: job {report.job_id} already committed these documents", markup=False)
        elif report.commit:
            console.out.print(f"To undo this run: extractor rollback {report.job_id}", markup=False)

    emit(data, as_json, render)
    if report.pending:
        console.err.print(f"not finished: {report.pending}", markup=False, highlight=False, soft_wrap=True)
    if report.verify.get("quarantined"):
        console.err.print(
            f"{report.verify['quarantined']} document(s) quarantined — see {report.job_id}/verify.json",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    for warning in report.warnings:
        console.err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    if report.exit_code:
        raise typer.Exit(int(report.exit_code))


def _run_review_page(store: JobStore, job_id: str | None, html: Path) -> str | None:
    """The review page of the run's job when it got as far as verify; a note on stderr when it did not."""
    from extractor.review import write_review
    from extractor.review.data import REVIEWABLE

    job = store.load(job_id) if job_id else None
    if job is None or job.state not in REVIEWABLE or not job.verify_path.exists():
        console.err.print(
            f"no review page: the job was not verified{f' ({job_id})' if job_id else ''}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return None
    write_review(job, html)
    console.err.print(f"review page: {html}", markup=False, highlight=False, soft_wrap=True)
    return str(html)


# ---------------------------------------------------------------- report / compare / audit / graph / schema


@app.command()
def report(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only jobs created on or after this date: YYYY-MM-DD, an ISO time, or Nd (N days ago)."
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit 3 when the grounded or schema-valid rate dropped beyond the threshold (for cron alerts).",
        ),
    ] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a standalone HTML page with charts.")] = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Flag a rate this far below the trailing average (0.10 = ten points).")
    ] = 0.10,
    window: Annotated[
        int, typer.Option("--window", help="Earlier jobs of the same backend and model in the trailing average.")
    ] = 5,
    price_model: Annotated[
        str | None, typer.Option("--price-model", help="OpenAI model that local jobs' tokens are priced as.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Cost, tokens, latency and quality per job and per backend, with trends; syncs the ledger from the job folders
    first.
    """
    from extractor.cli.report_view import render_report
    from extractor.errors import BadInput
    from extractor.reports.ledger import Ledger
    from extractor.reports.reporting import ReportOptions, build_report, parse_since

    if not 0 <= threshold <= 1 or window < 1:
        raise BadInput("--threshold must be between 0 and 1 and --window at least 1")
    options = ReportOptions(
        since=parse_since(since) if since else None,
        threshold=threshold,
        window=window,
        **({"price_model": price_model} if price_model else {}),
    )
    with Ledger.for_jobs(store_of(ctx)) as ledger:
        ledger.sync_store(store_of(ctx))
        data = build_report(ledger, options)
    if html:
        from extractor.reports.report_html import write_report_html

        write_report_html(data, html)

    emit(data, as_json, lambda: render_report(data))
    if check and data["check"]["failed"]:
        for flag in data["check"]["flags"]:
            console.err.print(
                f"quality dropped: {flag['job_id']}: {flag['message']}", markup=False, highlight=False, soft_wrap=True
            )
        raise typer.Exit(int(ExitCode.QUARANTINED))


@app.command()
def compare(ctx: typer.Context, job_a: str, job_b: str, as_json: JsonOpt = False) -> None:
    """Entity-level agreement of job A against job B on the same documents."""
    from extractor.cli.report_view import render_comparison
    from extractor.reports.comparison import compare_jobs

    store = store_of(ctx)
    data = compare_jobs(store.load(job_a), store.load(job_b))

    emit(data, as_json, lambda: render_comparison(data, job_a, job_b))


@app.command()
def audit(ctx: typer.Context, job_id: str, as_json: JsonOpt = False) -> None:
    """Re-run the isolation audit on a job's request lines; exit 2 on any violation."""
    from extractor.prepare.isolation import audit_job

    job = store_of(ctx).load(job_id)
    result = audit_job(job)
    data = {"job_id": job.id, **result.as_dict()}

    def render() -> None:
        verdict = "isolated" if result.ok else f"{len(result.problems)} problem(s)"
        console.out.print(
            f"audit of {job.id}: {result.lines} lines, {result.documents} documents — {verdict}",
            markup=False,
            highlight=False,
        )
        for problem in result.problems:
            console.out.print(f"problem: {problem}", markup=False, highlight=False)
        for warning in result.warnings:
            console.out.print(f"warning: {warning}", markup=False, highlight=False)

    emit(data, as_json, render)
    if result.problems:
        raise typer.Exit(int(ExitCode.BAD_INPUT))


@graph_app.command("cypher")
def graph_cypher(
    dialect: Annotated[Dialect, typer.Option("--dialect")] = Dialect.NEO4J,
    schema: Annotated[Path | None, typer.Option("--schema")] = None,
) -> None:
    """Print every Cypher statement the store can send, one JSON object a line."""
    from extractor.graph.cypher import iter_statements
    from extractor.graph.model import GraphVocabulary
    from extractor.spec.schema import DEFAULT_SPEC_PATH, load_spec

    spec = load_spec(schema or DEFAULT_SPEC_PATH)
    vocab = GraphVocabulary.from_types(spec.entity_types(), spec.relation_types())
    for statement in iter_statements(dialect.value, vocab):
        sys.stdout.write(orjson.dumps(statement).decode() + "\n")


@schema_app.command("check")
def schema_check(
    file: Annotated[Path | None, typer.Argument(help="The spec file (default: the bundled default spec).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a spec against OpenAI strict-mode rules; exit 2 listing every problem by JSON path."""
    from extractor.spec.schema import DEFAULT_SPEC_PATH, check_spec, read_spec_json

    file = file or DEFAULT_SPEC_PATH
    problems = check_spec(read_spec_json(file))
    data = {
        "file": str(file),
        "ok": not problems,
        "problems": [{"path": p.path, "message": p.message} for p in problems],
    }

    def render() -> None:
        if not problems:
            console.out.print(f"{file}: ok", markup=False, highlight=False)
        for p in problems:
            console.out.print(f"{file}: {p.path or '/'}: {p.message}", markup=False, highlight=False)

    emit(data, as_json, render)
    if problems:
        raise typer.Exit(int(ExitCode.BAD_INPUT))


@schema_app.command("show")
def schema_show(
    name: Annotated[str, typer.Argument(help="default | gate")] = "default",
) -> None:
    """Print a bundled spec, to start your own from: extractor schema show > my-spec.json"""
    from extractor.errors import BadInput
    from extractor.spec import BUNDLED_SPECS, bundled_spec_path

    if name not in BUNDLED_SPECS:
        raise BadInput(f"no bundled spec {name!r} — use {' or '.join(BUNDLED_SPECS)}")
    sys.stdout.write(bundled_spec_path(name).read_text(encoding="utf-8"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
