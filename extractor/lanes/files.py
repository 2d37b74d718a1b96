"""The lane of answers taken in from files (`collect --output-file/--error-file`): they are already in the job folder.

Nothing runs anywhere, so there is nothing to fetch, poll or cancel. Sending (a submit, a retry) is the business
of the lane the job was prepared for: the job's `backend`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from extractor.jobs import Job, State
from extractor.lanes import Lane, LaneInfo, Progress, WaitOptions, load

if TYPE_CHECKING:
    from extractor.lanes.submit import SubmitOptions


class FileLane:
    def __init__(self, info: LaneInfo) -> None:
        self.info = info

    @staticmethod
    def prepared_for(job: Job) -> Lane:
        return load(job.manifest["backend"])

    def submit(self, job: Job, options: SubmitOptions, progress: Progress | None = None) -> dict[str, Any]:
        return self.prepared_for(job).submit(job, options, progress)

    def fetch(self, job: Job, wait: WaitOptions | None = None, progress: Progress | None = None) -> dict[str, Any]:
        return {}

    def pending(self, job: Job) -> int:
        return 0

    def cancel(self, job: Job) -> dict[str, Any]:
        job.transition(State.CANCELLED)
        return {}

    def resend(
        self,
        job: Job,
        ids: set[str],
        *,
        attempt: int,
        truncated: set[str],
        attempts: dict[str, int],
        options: SubmitOptions,
        progress: Progress | None,
        set_aside: Callable[[], None],
    ) -> dict[str, Any]:
        return self.prepared_for(job).resend(
            job,
            ids,
            attempt=attempt,
            truncated=truncated,
            attempts=attempts,
            options=options,
            progress=progress,
            set_aside=set_aside,
        )

    def progress(self, job: Job) -> dict[str, Any]:
        return {}
