"""SLURM executor: pending runs become submitit job arrays, and `ablate run` follows them to the end.

On the shared filesystem, per grid:

    results/<grid>/.slurm/<submission>/            submitit's folder, one per `ablate run` that submitted
        <array>_submission.sh, <job>_submitted.pkl   the sbatch script and each job's pickled callable
        <array>_<task>_0_log.out                   the job's stdout + stderr, every attempt appended
    results/<grid>/<run_id>/slurm_job.json         written at submission: job id, log path, submission folder
    results/<grid>/<run_id>/slurm.log              symlink to the job's log
    results/<grid>/<run_id>/result.json            written by the job (or, for a job that died, by the follower)

The modules, one concern each:

    queries.py   what the scheduler says (sinfo, scontrol, sacct, squeue)
    job.py       what runs inside a job (`SlurmRun`, requeued as itself at a time-out)
    submit.py    submission: job arrays and their parameters (imports submitit)
    follow.py    the follower: results and job states until every run has one; lost jobs

Importing this package does not import submitit (only submit.py and job.py do): `ablate status`
reads the follower's view of the runs without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.execute.base import Check, Executor, ExecutorError, Say, Started, Summary, describe_failure
from ablate.execute.slurm import follow, queries
from ablate.plan import PlannedRun

if TYPE_CHECKING:
    from ablate.config import SlurmSpec


class SlurmExecutor(Executor):
    """`submit` sends the runs not done nor in flight as job arrays; `follow` waits for their results."""

    name = "slurm"
    keeps_running = "on SLURM"
    idle_note = "; nothing submitted to SLURM"

    def __init__(self, grid: str, results_root: Path, spec: SlurmSpec, why: str, explicit: bool = False,
                 retry_failed: bool = True):
        """`why` SLURM was chosen (shown at submission); `explicit`: asked for by name, so its absence is an error."""
        super().__init__(grid, results_root, retry_failed)
        self.spec = spec
        self.why = why
        self.explicit = explicit

    def submit(self, todo: list[PlannedRun], total: int, check: Check, say: Say) -> Started:
        if self.explicit:
            available, reason = queries.slurm_available()
            if not available:
                raise ExecutorError(f"--executor slurm: {reason}; use --executor local, or run this on the cluster's login node")
        fresh, flying, lost = follow.partition_runs(todo, self.grid, self.results_root, self.retry_failed)
        for view in lost:
            say("\n".join(describe_failure(view)))
        if fresh:
            check(fresh)
            from ablate.execute.slurm.submit import describe_arrays, submit_runs  # submitit: only to submit

            submitted, folder = submit_runs(fresh, self.grid, self.results_root, self.spec)
            say(f"grid {self.grid}: submitted {len(submitted)} runs to SLURM ({self.why}) as job array "
                f"{describe_arrays(submitted)}, at most {self.spec.array_parallelism} at once; logs in {folder}")
        else:
            say(f"grid {self.grid}: nothing to submit"
                + (f"; {len(flying)} runs already queued or running on SLURM" if flying else ""))
        runs = fresh + flying
        if not runs:
            say(f"grid {self.grid}: {len(lost)} runs lost their SLURM job; rerun them with --retry-failed")
        return Started(runs, total, lost=len(lost))

    def follow(self, started: Started, say: Say, show_progress: bool) -> Summary:
        summary = follow.follow(started.runs, self.grid, self.results_root, started.total, say=say,
                                live=follow.stderr_live if show_progress else None)
        summary.skipped -= started.lost  # found lost before submission: they count as failed, not as done
        summary.lost = started.lost
        return summary


def __getattr__(name: str) -> Any:
    # Jobs submitted before this package was split hold a pickled `ablate.execute.slurm.SlurmRun`;
    # a requeued one unpickles it by that name. Looked up lazily so that importing the package
    # does not import submitit.
    if name == "SlurmRun":
        from ablate.execute.slurm.job import SlurmRun

        return SlurmRun
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
