"""The append-only JSONL record store behind ``annotate``, ``eval`` and batch ``collect``.

Rules (see docs/judge.md):
- A record's ``id`` is its idempotency key: sha256 of the sample key plus the canonical JSON of the judge
  fingerprint, so changing the model, prompt version or image policy re-judges everything.
- Each record is one ``write()`` of a complete line to an ``O_APPEND`` descriptor. Once ``write()`` returns, the
  record is in the kernel and survives a SIGKILL of the process, so a kill loses at most the requests in flight.
  ``fsync`` (which only matters for a power loss or kernel crash) is grouped: at most every ``fsync_interval``
  seconds (0 = after every record) and on close; a torn last line left by a power loss is ignored on read and
  cut off before the next append.
- The final view is last-wins per ``id``. ``ok``, ``refused`` and ``invalid`` are terminal and skipped on
  re-run; ``error`` (transient failures after all retries) is re-judged on re-run and the new record supersedes it.
- One writer per output directory, enforced with an exclusive ``flock`` on ``<dir>/.lock``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from mredit.judge.base import JudgeResult

RETRIED_ON_RESUME: tuple[str, ...] = ("error",)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_id(key: str, fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256((key + "\n" + canonical_json(fingerprint)).encode("utf-8")).hexdigest()


def make_record(result: JudgeResult, fingerprint: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "key": result.key,
        "id": record_id(result.key, fingerprint),
        "status": result.status,
        "judgement": result.judgement.to_dict() if result.judgement is not None else None,
        "error": result.error,
        "fingerprint": fingerprint,
        "usage": dict(result.usage),
        "cost_usd": round(float(result.cost_usd), 8),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if result.raw is not None:
        record["raw"] = result.raw
    return record


def read_records(path: str | os.PathLike) -> tuple[list[dict[str, Any]], int]:
    """All complete records in file order, and how many lines were unreadable (a torn last line is not counted)."""
    path = Path(path)
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        lines.pop()  # torn last line (no newline): the write that produced it never completed
    records, bad = [], 0
    for line in lines:
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad += 1
            continue
        if isinstance(record, dict) and "id" in record and "status" in record:
            records.append(record)
        else:
            bad += 1
    return records, bad


def final_view(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Last record per idempotency id (dict order = order of first appearance)."""
    view: dict[str, dict[str, Any]] = {}
    for record in records:
        view[record["id"]] = record
    return view


def done_ids(records: list[dict[str, Any]], retry_statuses: tuple[str, ...] = RETRIED_ON_RESUME) -> set[str]:
    return {rid for rid, r in final_view(records).items() if r["status"] not in retry_statuses}


class RecordWriter:
    """Exclusive appender to one JSONL file; use as a context manager."""

    def __init__(self, path: str | os.PathLike, fsync_interval: float = 0.5) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync_interval = fsync_interval
        self._last_sync = time.monotonic()
        self._lock_fd = os.open(self.path.parent / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise RuntimeError(f"another judge run is writing to {self.path.parent} (lock held)") from None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._cut_torn_tail()
        self.written = 0

    def _cut_torn_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(max(0, size - 1))
            if f.read(1) == b"\n":
                return
            f.seek(0)
            keep = f.read().rfind(b"\n") + 1
        os.truncate(self.path, keep)

    def append(self, record: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        if time.monotonic() - self._last_sync >= self.fsync_interval:
            os.fsync(self._fd)  # ~5 ms on a network disk: grouped so it does not cap the request rate
            self._last_sync = time.monotonic()
        self.written += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            os.close(self._lock_fd)
            self._fd = -1

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
