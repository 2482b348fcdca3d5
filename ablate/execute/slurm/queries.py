"""What the scheduler says: whether SLURM answers here, its limits, and the state of jobs (sacct, squeue).

Every question is a SLURM command run with a timeout; a command that is missing, fails or hangs
counts as no answer. submitit is imported only to read sacct's array job ids, which it parses too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's default MaxArraySize

# sacct states. A job in a final state will not run again unless SLURM requeues it (then its newest
# record is PENDING again). Every other state (PENDING, RUNNING, REQUEUED, COMPLETING, SUSPENDED,
# REQUEUE_HOLD, ...) counts as not finished.
FINAL_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
    "REVOKED", "TIMEOUT", "GONE",  # GONE: unknown to the scheduler (ablate's own word)
})
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "RESIZING"})


def _answers(command: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done if done.returncode == 0 else None


# ------------------------------------------------------------------------------------ availability


def slurm_available() -> tuple[bool, str]:
    """(True, why) where jobs can be submitted from here: sbatch on PATH and a controller that answers."""
    if shutil.which("sbatch") is None:
        return False, "sbatch is not on the PATH"
    if _answers(["sinfo", "-h", "-o", "%P"]) is None:
        return False, "sbatch is on the PATH but the SLURM controller does not answer `sinfo`"
    return True, "sbatch is on the PATH and the controller answers"


def max_array_size() -> int:
    """The cluster's MaxArraySize (an array holds at most this many tasks, indices 0..size-1)."""
    done = _answers(["scontrol", "show", "config"])
    if done is not None:
        match = re.search(r"^MaxArraySize\s*=\s*(\d+)", done.stdout, re.MULTILINE)
        if match:
            return max(1, int(match.group(1)))
    return DEFAULT_MAX_ARRAY_SIZE


def partition_has_gpus(partition: str | None) -> bool:
    """True when sinfo lists a gpu GRES on the partition (the default one when None)."""
    command = ["sinfo", "-h", "-o", "%G"] + (["-p", partition] if partition else [])
    done = _answers(command)
    return done is not None and "gpu" in done.stdout.lower()


# ------------------------------------------------------------------------------- scheduler state


@dataclass
class JobState:
    state: str  # sacct's state word (PENDING, RUNNING, COMPLETED, CANCELLED, ...) or GONE
    exit_code: str = ""
    end: float | None = None  # when a final state began (epoch seconds), if known
    requeues: int = 0  # earlier records of the job (requeued or preempted attempts)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def expand_job_ids(text: str) -> list[str]:
    """'25_[1-3,7%2]' -> ['25_1', '25_2', '25_3', '25_7']; '25_4' and '25' stay as they are.

    submitit's own reader of sacct's job ids does the parsing; an id it cannot read is kept as it is.
    """
    from submitit.slurm.slurm import read_job_id

    text = text.strip()
    try:
        parts = read_job_id(text)
    except ValueError:
        return [text]
    ids = []
    for base, *tasks in parts:
        if not tasks:
            ids.append(base)
        else:
            low, high = int(tasks[0]), int(tasks[-1])
            ids += [f"{base}_{i}" for i in range(low, high + 1)]
    return ids


def _parse_time(text: str) -> float | None:
    try:
        return time.mktime(time.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None  # 'Unknown', 'None'


def parse_sacct(text: str) -> dict[str, JobState]:
    """`sacct -n -P -X -D -o JobID,State,ExitCode,End` output -> newest state per job id.

    With -D a requeued job has one record per attempt, oldest first; its newest record decides.
    """
    states: dict[str, JobState] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 4 or not fields[0].strip():
            continue
        state = fields[1].split()[0] if fields[1].strip() else "UNKNOWN"  # 'CANCELLED by 0' -> CANCELLED
        for job_id in expand_job_ids(fields[0]):
            earlier = states.get(job_id)
            states[job_id] = JobState(state, fields[2].strip(), _parse_time(fields[3]) if state in FINAL_STATES else None,
                                      earlier.requeues + 1 if earlier else 0)
    return states


def parse_squeue(text: str) -> dict[str, JobState]:
    """`squeue -h -r -o %i|%T` output -> state per job id (jobs still known to the controller)."""
    states = {}
    for line in text.splitlines():
        job_id, _, state = line.partition("|")
        for one in expand_job_ids(job_id):
            if state.strip():
                states[one] = JobState(state.strip())
    return states


def scheduler_states(job_ids: Iterable[str]) -> dict[str, JobState] | None:
    """The state of each job; jobs the scheduler does not know are left out. None if it cannot be asked.

    sacct (accounting) first: it also knows finished jobs and their exit; where it says a job
    ended, squeue (the controller) may know better. Without sacct, squeue alone: a job it no longer
    lists is reported GONE.
    """
    job_ids = [job_id for job_id in job_ids if job_id]
    ids = sorted({job_id.split("_")[0] for job_id in job_ids})
    if not ids:
        return {}
    done = _answers(["sacct", "-n", "-P", "-X", "-D", "-j", ",".join(ids), "-o", "JobID,State,ExitCode,End"], timeout=30)
    if done is not None:
        states = parse_sacct(done.stdout)
        missing = [job_id for job_id in job_ids if job_id not in states]
        if missing or any(state.final for job_id, state in states.items() if job_id in job_ids):
            # Accounting lags the controller: a preempted job shows PREEMPTED in sacct for a while
            # before its requeued record appears, while squeue already lists it PENDING again; and
            # an array task that has just started is missing from sacct for a moment (its pending
            # record already names only the later tasks), while squeue lists it RUNNING.
            live = _squeue()
            for job_id, state in (live or {}).items():
                if job_id in states and states[job_id].final and not state.final:
                    states[job_id] = JobState(state.state, requeues=states[job_id].requeues + 1)
                elif job_id in missing:
                    states[job_id] = state
        return states
    live = _squeue()
    if live is None:
        return None
    now = time.time()
    return {job_id: live.get(job_id, JobState("GONE", end=now)) for job_id in job_ids}


def _squeue() -> dict[str, JobState] | None:
    """The controller's view of this user's jobs (finished ones drop out after MinJobAge)."""
    import getpass

    done = _answers(["squeue", "-h", "-r", "-o", "%i|%T", "-u", getpass.getuser()], timeout=30)
    return None if done is None else parse_squeue(done.stdout)
