"""A real Neo4j Community for the tests: fetched by Maven once into a cache folder, started embedded
with Bolt on a free loopback port, authentication on and a generated password.

    fetch_neo4j()                      -> the folder of jars (runs `mvn dependency:copy-dependencies` once)
    with Neo4jServer(home) as server:  -> server.uri, server.username, server.password

The version is pinned in tests/neo4j/pom.xml. The cache is $EXTRACTOR_TEST_NEO4J_CACHE, else
$XDG_CACHE_HOME/extractor-tests, else ~/.cache/extractor-tests; concurrent test runs share it
under a file lock. Start and stop are bounded; a failure names the last lines of the logs.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LAUNCHER_DIR = Path(__file__).resolve().parent / "neo4j"
POM = LAUNCHER_DIR / "pom.xml"
LAUNCHER = LAUNCHER_DIR / "Neo4jLauncher.java"
FETCH_TIMEOUT_S = 1200.0
START_TIMEOUT_S = 480.0  # a loaded 2-core machine (load 20) has taken 185 s, javac included
STOP_TIMEOUT_S = 60.0
JAVA_MIN = 17
# What Neo4j's own start script gives the JVM on Java 17+ (server.jvm.additional in neo4j.conf).
JVM_OPTIONS = [
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dlog4j2.disable.jmx=true",
]


class Neo4jUnavailable(RuntimeError):
    """Java or Maven is missing, or the jars cannot be fetched: the message says what to do."""


def neo4j_version() -> str:
    match = re.search(r"<neo4j\.version>([^<]+)</neo4j\.version>", POM.read_text(encoding="utf-8"))
    assert match, f"{POM} pins no neo4j.version"
    return match.group(1)


def cache_root() -> Path:
    if env := os.environ.get("EXTRACTOR_TEST_NEO4J_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "extractor-tests"


def java_executable() -> str | None:
    """JAVA_HOME's java, else the one on PATH, if it is Java 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else shutil.which("java")
    if java is None:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)', out)
    return java if match and int(match.group(1)) >= JAVA_MIN else None


@functools.cache
def missing_tools() -> tuple[str, ...]:
    """What the Neo4j tests need and this machine lacks, each with how to get it."""
    missing = []
    if java_executable() is None:
        missing.append(f"Java {JAVA_MIN}+ (apt-get install openjdk-17-jdk-headless, or set JAVA_HOME)")
    if shutil.which("mvn") is None:
        missing.append("Maven (apt-get install maven)")
    return tuple(missing)


def fetch_neo4j(log: IO[str] | None = None) -> Path:
    """The folder holding org.neo4j:neo4j and its dependencies, fetched by Maven on first use."""
    lib = cache_root() / f"neo4j-{neo4j_version()}" / "lib"
    if (lib / ".complete").exists():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with open(lib.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be fetching the same version
        if (lib / ".complete").exists():
            return lib
        partial = lib.parent / "lib.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(lib, ignore_errors=True)
        command = [
            "mvn", "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}", "-DincludeScope=runtime",
        ]  # fmt: skip
        started = time.monotonic()
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise Neo4jUnavailable(
                f"Maven did not fetch Neo4j {neo4j_version()} within {FETCH_TIMEOUT_S:.0f} s"
            ) from exc
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise Neo4jUnavailable(
                f"Maven could not fetch Neo4j {neo4j_version()} (is Maven Central reachable?):\n{tail}"
            )
        (partial / ".complete").write_text(f"fetched in {time.monotonic() - started:.0f} s\n")
        partial.rename(lib)
        if log is not None:
            log.write(f"fetched Neo4j {neo4j_version()} into {lib} in {time.monotonic() - started:.0f} s\n")
    return lib


def launcher_command(java: str, lib: Path) -> list[str]:
    """`-cp … Neo4jLauncher`, compiled once per source into the cache; from source where there is no javac."""
    javac = Path(java).with_name("javac")
    if not javac.exists():
        return ["-cp", f"{lib}/*", str(LAUNCHER)]
    digest = hashlib.sha256(LAUNCHER.read_bytes()).hexdigest()[:12]
    classes = lib.parent / f"launcher-{digest}"
    if not (classes / "Neo4jLauncher.class").exists():
        partial = lib.parent / f"launcher-{digest}.{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        result = subprocess.run(
            [str(javac), "-cp", f"{lib}/*", "-d", str(partial), str(LAUNCHER)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"javac could not compile {LAUNCHER}:\n{result.stdout}{result.stderr}")
        try:
            partial.rename(classes)
        except OSError:  # another test run compiled it first
            shutil.rmtree(partial, ignore_errors=True)
    return ["-cp", f"{classes}:{lib}/*", "Neo4jLauncher"]


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path} not written)"
    return "\n".join(f"  {line}" for line in text.splitlines()[-lines:]) or f"({path} is empty)"


@dataclass
class Neo4jServer:
    """An embedded Neo4j Community DBMS in `home`, for one test session."""

    home: Path
    username: str = "neo4j"
    jvm_options: tuple[str, ...] = tuple(JVM_OPTIONS)
    pagecache_mb: int = 128

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        self.password = secrets.token_urlsafe(18)
        self.uri = ""
        self._process: subprocess.Popen[str] | None = None

    @property
    def launcher_log(self) -> Path:
        return self.home / "launcher.log"

    @property
    def debug_log(self) -> Path:
        return self.home / "logs" / "debug.log"

    def logs(self) -> str:
        return f"{self.launcher_log}:\n{tail(self.launcher_log)}\n{self.debug_log}:\n{tail(self.debug_log)}"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> Neo4jServer:
        java = java_executable()
        if java is None:
            raise Neo4jUnavailable(f"Java {JAVA_MIN}+ is needed to start Neo4j (set JAVA_HOME)")
        lib = fetch_neo4j()
        main = launcher_command(java, lib)
        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "NEO4J_LAUNCHER_PASSWORD": self.password,
            "NEO4J_LAUNCHER_PAGECACHE_MB": str(self.pagecache_mb),
        }
        with open(self.launcher_log, "w") as out:
            self._process = subprocess.Popen(
                [java, *self.jvm_options, *main, str(self.home)],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                text=True,
                start_new_session=True,  # a ^C to pytest reaches us, and we stop it in order
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.search(r"^READY (bolt://\S+)$", self.launcher_log.read_text(errors="replace"), re.M)
            if match:
                self.uri = match.group(1)
                return self
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"Neo4j exited at start with code {self._process.returncode}; last lines:\n{self.logs()}"
                )
            time.sleep(0.1)
        self._kill()
        raise RuntimeError(f"Neo4j did not start within {timeout_s:.0f} s; last lines:\n{self.logs()}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            assert process.stdin is not None
            process.stdin.write("stop\n")
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise RuntimeError(
                f"Neo4j did not stop within {timeout_s:.0f} s and was killed; last lines:\n{self.logs()}"
            ) from exc

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> Neo4jServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EarlyStart:
    """The session's server, started in a thread as soon as the tests that need it are collected, so the
    JVM's start overlaps the tests before them; `server()` waits for it (and re-raises its failure)."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._server: Neo4jServer | None = None
        self._error: BaseException | None = None

    @property
    def begun(self) -> bool:
        return self._thread is not None

    def begin(self, home: Path) -> None:
        def run() -> None:
            try:
                self._server = Neo4jServer(home).start()
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=run, name="neo4j-start", daemon=True)
        self._thread.start()

    def server(self) -> Neo4jServer:
        assert self._thread is not None
        self._thread.join(timeout=FETCH_TIMEOUT_S + START_TIMEOUT_S)
        if self._error is not None:
            raise self._error
        if self._server is None:
            raise RuntimeError("Neo4j's start thread did not finish in time")
        return self._server

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=FETCH_TIMEOUT_S + START_TIMEOUT_S)
        if self._server is not None:
            self._server.stop()
            self._server = None


EARLY = EarlyStart()
