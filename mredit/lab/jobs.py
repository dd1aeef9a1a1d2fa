"""Running tool commands as subprocesses, several side by side (one thread each), with a progress bar per job.

A job may name a progress file (``{"step", "loss"}`` JSON, written by
``mredit.callbacks.training_monitor.TrainingMonitor``) and its total;
a failed job stops the others and raises with the tail of its log.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm


def child_env() -> dict[str, str]:
    """One thread per process (runs go side by side on the cores), offline logging, unbuffered output."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = "1"
    env.setdefault("WANDB_MODE", "offline")
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Job:
    """A subprocess with a log file and, optionally, a progress file and its total."""

    name: str
    argv: list[str]
    log_path: Path
    progress_path: Path | None = None
    total: int | None = None
    on_success: Callable[[], None] | None = None  # e.g. marks the job's output done


def _read_progress(job: Job) -> tuple[int, float | None]:
    if job.progress_path is None or not job.progress_path.exists():
        return 0, None
    try:
        state = json.loads(job.progress_path.read_text())
    except (json.JSONDecodeError, OSError):
        return 0, None
    return int(state.get("step", 0)), state.get("loss")


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def run_jobs(jobs: Sequence[Job], max_parallel: int = 2, poll_s: float = 1.0) -> None:
    """Run jobs, ``max_parallel`` at a time, each with one thread, showing a progress bar per job.

    A failed job stops the others and raises RuntimeError with the tail of its log.
    """
    pending, running = list(jobs), []
    bars = {
        job.name: tqdm(
            total=job.total,
            desc=job.name,
            position=i,
            unit="step",
            dynamic_ncols=True,
            bar_format=None if job.total else "{desc}: {elapsed}",  # no progress file: only the time
        )
        for i, job in enumerate(jobs)
    }
    try:
        while pending or running:
            while pending and len(running) < max_parallel:
                job = pending.pop(0)
                job.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = open(job.log_path, "a")  # closed when the process ends
                running.append(
                    (job, subprocess.Popen(job.argv, stdout=log, stderr=subprocess.STDOUT, env=child_env()), log)
                )
            time.sleep(poll_s)
            for job, process, log in list(running):
                step, loss = _read_progress(job)
                bar = bars[job.name]
                bar.update(max(step - bar.n, 0))
                if loss is not None:
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                code = process.poll()
                if code is None:
                    continue
                log.close()
                running.remove((job, process, log))
                if code != 0:
                    raise RuntimeError(
                        f"{job.name} failed (exit code {code}); log {job.log_path}:\n{_tail(job.log_path)}"
                    )
                if job.on_success is not None:
                    job.on_success()
                if job.total:
                    bar.update(job.total - bar.n)
                bar.close()
    finally:
        for _, process, log in running:
            process.kill()
            process.wait()
            log.close()
        for bar in bars.values():
            bar.close()
