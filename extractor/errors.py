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
