"""Fleet benchmark: the local lane across k stub servers, a server killed mid-run, a slow server, a rate-limited host.

    .venv/bin/python -m benchmarks.fleet [--requests 2000] [--service-ms 200] [--slots 4] [--parts all]

Every stub is its own process (so `kill -9` is real) serving llama.cpp's shape of API over HTTP/1.1
keep-alive: `/health`, `/props` with `total_slots`, and `/v1/chat/completions`, which holds each
request for a fixed service time in one of its slots (requests beyond the slots wait, as in
llama.cpp). The lane reads the slot count from `/props`, as it does against llama.cpp.

Parts:
- scale: k = 1, 2, 4, 8 servers, the same requests; goal: throughput ≥ 0.9 · k · the single-server figure;
- kill: four servers, one SIGKILLed when half the answers are in: total time, lost and duplicated lines;
- slow: four servers, one with 10× the service time, against the same fleet without it;
- hosted: one endpoint that allows 8 requests in flight and answers 429 above that, with `Retry-After: 1`
  (`--retry-after ''` for none); no `/props`, the lane allowed 32 (`--concurrency URL=32`): the
  concurrency it settles at and the share of 429s after the first 30 s (goal < 5 %), measured at the stub.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

# The stub processes import only the standard library (a loaded machine takes seconds to import the SDK);
# the lane's modules are imported where the runs need them.

REPO = Path(__file__).resolve().parent.parent


# --- the stub server, run as `python -m benchmarks.fleet --serve PORT ...` ----------------------------


def _answer(status: int, payload: dict, extra: str = "") -> bytes:
    body = json.dumps(payload).encode()
    reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests"}[status]
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


COMPLETION = {
    "id": "chatcmpl-stub",
    "object": "chat.completion",
    "created": 0,
    "model": "stub",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": '{"entities": [], "relations": []}'},
        }
    ],
    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
}


async def _serve(port: int, slots: int, service_s: float, allow: int | None, retry_after: str | None) -> None:
    """slots: llama.cpp-like, queue beyond them. allow: hosted-like, 429 above that many in flight."""
    gate = asyncio.Semaphore(slots)
    in_flight = 0
    started = time.monotonic()
    log: list[tuple[float, int, int]] = []  # (seconds since start, status, in flight after)

    async def chat(body: dict) -> bytes:
        nonlocal in_flight
        if body.get("max_tokens") == 1:  # the lane's warm-up probe
            return _answer(200, COMPLETION)
        if allow is not None and in_flight >= allow:
            log.append((time.monotonic() - started, 429, in_flight))
            return _answer(
                429,
                {"error": {"code": 429, "message": "Rate limit exceeded: too many requests in flight"}},
                f"Retry-After: {retry_after}\r\n" if retry_after else "",
            )
        in_flight += 1
        log.append((time.monotonic() - started, 0, in_flight))
        try:
            async with gate:
                await asyncio.sleep(service_s)
        finally:
            in_flight -= 1
        log.append((time.monotonic() - started, 200, in_flight))
        return _answer(200, COMPLETION)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                if method == "GET" and path == "/health":
                    out = _answer(200, {"status": "ok"})
                elif method == "GET" and path == "/props" and allow is None:
                    out = _answer(200, {"total_slots": slots})
                elif method == "GET" and path == "/stats":
                    out = _answer(200, {"log": log})
                elif method == "POST" and path == "/v1/chat/completions":
                    out = await chat(json.loads(body or b"{}"))
                else:
                    out = _answer(404, {"error": {"code": 404, "message": "not found"}})
                writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
    async with server:
        await server.serve_forever()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stub:
    """One stub server process."""

    def __init__(self, *, slots: int, service_s: float, allow: int | None = None, retry_after: str | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            sys.executable,
            "-m",
            "benchmarks.fleet",
            "--serve",
            str(self.port),
            "--slots",
            str(slots),
            "--service-ms",
            str(service_s * 1000),
        ]
        if allow is not None:
            args += ["--allow", str(allow)]
        args += ["--retry-after", retry_after or ""]
        self.proc = subprocess.Popen(args, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stats(self) -> list[list[float]]:
        import httpx

        return httpx.get(f"{self.url}/stats", timeout=10).json()["log"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


# --- the runs --------------------------------------------------------------------------------------


def lines(count: int) -> list[dict]:
    return [
        {
            "custom_id": f"req-{i:06d}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "stub",
                "messages": [
                    {"role": "system", "content": "List the entities."},
                    {"role": "user", "content": f"document {i}"},
                ],
                "max_tokens": 64,
                "temperature": 0,
            },
        }
        for i in range(count)
    ]


def run_lane(urls: list[str], count: int, workdir: Path, *, during: Any = None, **kwargs: Any) -> dict[str, Any]:
    from extractor.lanes.local import run_local_lane
    from extractor.storage import iter_jsonl

    out, err = workdir / "output.jsonl", workdir / "errors.jsonl"
    for path in (out, err):
        path.unlink(missing_ok=True)
    notices: list[str] = []
    watcher = threading.Thread(target=during, args=(out,), daemon=True) if during else None
    if watcher:
        watcher.start()
    started = time.perf_counter()
    cpu = time.process_time()
    marks: dict[str, float] = {}

    answered_at: list[float] = []

    def log(event: dict) -> None:
        if event["event"] == "lane_start":
            marks["start"] = time.perf_counter()
        elif event["event"] == "request" and event.get("status") == 200:
            answered_at.append(time.perf_counter())

    stats = run_local_lane(
        iter(lines(count)),
        output_path=out,
        error_path=err,
        base_url=urls,
        server_wait_s=30,
        notice=notices.append,
        log=log,
        **kwargs,
    )
    seconds = time.perf_counter() - started
    sending = time.perf_counter() - marks.get("start", started)  # without the health check and warm-up
    cpu = time.process_time() - cpu
    ids = Counter(row["custom_id"] for row in iter_jsonl(out)) if out.exists() else Counter()
    # Steady state: the answers from the 10th to the 90th percent, without the servers' start and the night's tail.
    low, high = len(answered_at) // 10, len(answered_at) * 9 // 10
    steady = (high - low) / (answered_at[high] - answered_at[low]) if high > low + 1 else None
    return {
        "seconds": seconds,
        "docs_per_s": count / sending,
        "steady_docs_per_s": steady,
        "answered": stats.answered,
        "failed": stats.failed,
        "lost": count - len(ids),
        "duplicated": sum(n - 1 for n in ids.values() if n > 1),
        "cpu_ms_per_request": 1000 * cpu / count,
        "servers": stats.servers,
        "notices": notices,
        "rate_limited": stats.rate_limited,
    }


def part_scale(args: argparse.Namespace, workdir: Path) -> list[dict]:
    rows = []
    single = steady_single = None
    for k in (1, 2, 4, 8):
        stubs = [Stub(slots=args.slots, service_s=args.service_ms / 1000) for _ in range(k)]
        try:
            result = run_lane([s.url for s in stubs], args.requests, workdir)
        finally:
            for stub in stubs:
                stub.kill()
        single = single or result["docs_per_s"]
        steady_single = steady_single or result["steady_docs_per_s"]
        row = {
            "k": k,
            "seconds": round(result["seconds"], 2),
            "docs_per_s": round(result["docs_per_s"], 1),
            "steady_docs_per_s": round(result["steady_docs_per_s"], 1),
            "ideal_docs_per_s": round(k * args.slots / (args.service_ms / 1000), 1),
            "vs_k_x_single": round(result["docs_per_s"] / (k * single), 3),
            "steady_vs_k_x_single": round(result["steady_docs_per_s"] / (k * steady_single), 3),
            "lost": result["lost"],
            "duplicated": result["duplicated"],
            "cpu_ms_per_request": round(result["cpu_ms_per_request"], 2),
            "answered_per_server": [s["answered"] for s in result["servers"]],
        }
        print(json.dumps({"scale": row}), flush=True)
        rows.append(row)
    return rows


def part_kill(args: argparse.Namespace, workdir: Path) -> dict:
    stubs = [Stub(slots=args.slots, service_s=args.service_ms / 1000) for _ in range(4)]
    killed_at: dict[str, float] = {}
    started = time.perf_counter()

    def kill_at_midpoint(out: Path) -> None:
        while True:
            time.sleep(0.02)
            if out.exists() and sum(1 for _ in out.open("rb")) >= args.requests // 2:
                stubs[1].kill()
                killed_at["s"] = time.perf_counter() - started
                return

    try:
        result = run_lane([s.url for s in stubs], args.requests, workdir, during=kill_at_midpoint)
    finally:
        for stub in stubs:
            stub.kill()
    row = {
        "servers": 4,
        "killed_at_s": round(killed_at.get("s", -1), 2),
        "seconds": round(result["seconds"], 2),
        "answered": result["answered"],
        "failed": result["failed"],
        "lost": result["lost"],
        "duplicated": result["duplicated"],
        "notices": result["notices"],
        "answered_per_server": [s["answered"] for s in result["servers"]],
    }
    print(json.dumps({"kill": row}), flush=True)
    return row


def part_slow(args: argparse.Namespace, workdir: Path) -> dict:
    service = args.service_ms / 1000
    fast = [Stub(slots=args.slots, service_s=service) for _ in range(3)]
    slow = Stub(slots=args.slots, service_s=10 * service)
    try:
        with_slow = run_lane([s.url for s in fast] + [slow.url], args.requests, workdir)
        without = run_lane([s.url for s in fast], args.requests, workdir)
        hedged = run_lane([s.url for s in fast] + [slow.url], args.requests, workdir, hedge_after=0.95)
    finally:
        for stub in [*fast, slow]:
            stub.kill()
    row = {
        "with_slow_s": round(with_slow["seconds"], 2),
        "without_slow_s": round(without["seconds"], 2),
        "with_slow_hedged_p95_s": round(hedged["seconds"], 2),
        "slow_server_answered": with_slow["servers"][-1]["answered"],
        "hedged_slow_server_answered": hedged["servers"][-1]["answered"],
        "hedged_duplicates": sum(s["duplicates"] for s in hedged["servers"]),
        "hedges_sent": sum(s["hedges_sent"] for s in hedged["servers"]),
        "lost": with_slow["lost"] + without["lost"] + hedged["lost"],
        "duplicated": with_slow["duplicated"] + without["duplicated"] + hedged["duplicated"],
    }
    print(json.dumps({"slow": row}), flush=True)
    return row


def part_hosted(args: argparse.Namespace, workdir: Path) -> dict:
    from extractor.lanes.fleet import server_key

    stub = Stub(slots=10_000, service_s=args.service_ms / 1000, allow=8, retry_after=args.retry_after)
    try:
        result = run_lane([stub.url], args.hosted_requests, workdir, concurrency_by_url={server_key(stub.url): 32})
        log = stub.stats()
    finally:
        stub.kill()
    after = [(t, status, n) for t, status, n in log if t >= args.settle_s]
    answered = sum(1 for _, status, _ in after if status == 200)
    refused = sum(1 for _, status, _ in after if status == 429)
    # time-weighted requests in flight at the stub after the settling time: what the lane settled at
    area, last_t, last_n = 0.0, None, 0
    for t, status, n in log:
        if last_t is not None and t >= args.settle_s:
            area += last_n * (t - max(last_t, args.settle_s))
        last_t, last_n = t, n if status != 429 else last_n
    span = (log[-1][0] - args.settle_s) if log and log[-1][0] > args.settle_s else 0
    [server] = result["servers"]
    row = {
        "retry_after": args.retry_after,
        "requests": args.hosted_requests,
        "seconds": round(result["seconds"], 2),
        "docs_per_s": round(result["docs_per_s"], 1),
        "ideal_docs_per_s": round(8 / (args.service_ms / 1000), 1),
        "rate_limited_total": result["rate_limited"],
        "share_429_after_settle": round(refused / max(1, refused + answered), 4),
        "mean_in_flight_after_settle": round(area / span, 2) if span else None,
        "lane_concurrency_mean": server["concurrency_mean"],
        "lane_concurrency_final": server["concurrency_final"],
        "lost": result["lost"],
        "duplicated": result["duplicated"],
    }
    print(json.dumps({"hosted": row}), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--hosted-requests", type=int, default=2400, help="enough for a minute at 8 in flight")
    parser.add_argument("--service-ms", type=float, default=200)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--settle-s", type=float, default=30, help="hosted: 429s counted after this many seconds")
    parser.add_argument("--parts", default="scale,kill,slow,hosted")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--allow", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--retry-after", default="1", help="hosted: the Retry-After its 429s carry (seconds); '' sends none"
    )
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.slots, args.service_ms / 1000, args.allow, args.retry_after))
        return
    parts = {"scale": part_scale, "kill": part_kill, "slow": part_slow, "hosted": part_hosted}
    results = {}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.parts.split(","):
            results[name] = parts[name](args, Path(tmp))
    print(json.dumps({"load_before": load, "load_after": os.getloadavg(), **results}, indent=1))


if __name__ == "__main__":
    main()
