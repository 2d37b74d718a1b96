"""Exit codes and the domain errors that map onto them (the one place that does)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1
    BAD_INPUT = 2
    QUARANTINED = 3
    UNREACHABLE = 4
    LOCKED = 5
    PARTIAL = 6
    INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


class ExtractorError(Exception):
    """An expected failure: one clean line on stderr and an exit code, never a traceback."""

    exit_code = ExitCode.UNEXPECTED

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadInput(ExtractorError):
    """Usage error, bad file, bad state transition: the user can fix it."""

    exit_code = ExitCode.BAD_INPUT


class ServiceUnavailable(ExtractorError):
    """An external service (OpenAI, llama.cpp, graph store) could not be reached."""

    exit_code = ExitCode.UNREACHABLE


class LockHeld(ExtractorError):
    """Another run holds the jobs-dir lock."""

    exit_code = ExitCode.LOCKED


class EnvironmentProblem(BadInput):
    """The machine, not the input: a full disk, a read-only folder, a file where a folder should be."""


# errno → what went wrong and how to fix it; the path comes from the OSError itself.
_ENVIRONMENT_FIXES = {
    "ENOSPC": ("no space left on the device", "free some space"),
    "EDQUOT": ("disk quota exceeded", "free some space or raise the quota"),
    "EFBIG": ("file size limit reached (ulimit -f)", "raise the limit"),
    "EROFS": ("read-only file system", "make it writable or pass --jobs-dir on a writable disk"),
    "EACCES": ("permission denied", "make it writable for this user or pass --jobs-dir elsewhere"),
    "EPERM": ("operation not permitted", "make it writable for this user or pass --jobs-dir elsewhere"),
    "ENOTDIR": ("a file is where a folder should be", "move the file away or point the option at a folder"),
    "EISDIR": ("is a folder, but a file is needed", "pass a file path, not a folder"),
    "EEXIST": ("already exists and is not a folder", "move it away or point the option at a folder"),
}


def environment_problem(exc: BaseException, somewhere: str = "") -> EnvironmentProblem | None:
    """An OSError the user can fix (found inside an exception group too) as one line naming the path, else None."""
    import errno

    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := environment_problem(inner, somewhere)) is not None:
                return found
        return None
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    name = errno.errorcode.get(exc.errno, "")
    if name not in _ENVIRONMENT_FIXES:
        return None
    what, fix = _ENVIRONMENT_FIXES[name]
    # A copy that fails names source and destination (shutil); the one being written is the second.
    path = exc.filename2 if name in ("EISDIR", "ENOSPC", "EDQUOT", "EFBIG") and exc.filename2 else exc.filename
    where = f"{path}: " if path else (f"writing {somewhere}: " if somewhere else "")
    return EnvironmentProblem(
        f"{where}{what} — {fix}, then run the same command again "
        "(everything finished so far is kept and the job resumes)"
    )
