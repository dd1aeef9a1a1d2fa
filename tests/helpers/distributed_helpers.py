"""Helpers for the multi-process tests: torchrun command lines, free ports, killing a whole "node"."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from training_helpers import REPO

# torchrun is the console script of torch.distributed.run: the module form needs no PATH
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
QUIET_ENV = {"PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_node(node_rank: int, port: int, mredit_args: list[str], log: Path, nnodes: int = 2) -> subprocess.Popen:
    """One "node" of a multi-node run on this machine: ``torchrun --nnodes N --nproc_per_node 1 --node_rank i
    --master_addr 127.0.0.1`` starting ``python -m mredit ARGS``; stdout and stderr go to ``log``."""
    command = [
        *TORCHRUN,
        f"--nnodes={nnodes}",
        "--nproc_per_node=1",
        f"--node_rank={node_rank}",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        "-m",
        "mredit",
        *mredit_args,
    ]
    with open(log, "w") as out:
        return subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **QUIET_ENV}, stdout=out, stderr=subprocess.STDOUT
        )


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own, so a process group
    kill of the launcher leaves them running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def kill_node(process: subprocess.Popen) -> None:
    """SIGKILL a node: its launcher and every process under it, as when the machine goes away."""
    for pid in [process.pid, *descendants(process.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def wait_all(processes: list[subprocess.Popen], logs: list[Path], timeout: float) -> list[int]:
    """The return codes of ``processes``; kills them all and fails, with their logs' tails, after ``timeout``."""
    deadline = time.monotonic() + timeout
    try:
        return [process.wait(timeout=max(1.0, deadline - time.monotonic())) for process in processes]
    except subprocess.TimeoutExpired:
        for process in processes:
            kill_node(process)
        raise AssertionError(f"processes still running after {timeout:.0f} s:\n{log_tails(logs)}") from None


def log_tails(logs: list[Path]) -> str:
    return "\n".join(f"--- {log}\n{log.read_text()[-3000:]}" for log in logs)
