"""Joining rewards into samples: RewardEdit20K JSON or the judge's JSONL annotations.

RewardEdit20K: ``{name: [{"Score": s, "Negative Prompt": text}] x 3}`` in perspective order, keyed by the
InstructPix2Pix directory name. Judge JSONL: one record per line, ``{"key", "status", "judgement",
"fingerprint", ...}``; only ``status == "ok"`` records are joined, the last ok record of a key wins, and the
fingerprint becomes ``Reward.judge``. Nothing is dropped silently: reward keys that match no sample, samples left
without a reward, non-ok statuses and malformed records are all counted and listed in the report.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mredit.schema import EditSample, Reward, SampleError

REWARDEDIT, JUDGE_JSONL = "rewardedit", "judge-jsonl"


@dataclass
class RewardTable:
    """Rewards by key, read from one file, with what could not be used."""

    path: str
    format: str
    rewards: dict[str, Reward]
    records: int = 0
    statuses: Counter = field(default_factory=Counter)
    invalid: list[str] = field(default_factory=list)


def load_rewards(path: str | Path) -> RewardTable:
    """Read a RewardEdit20K JSON or judge JSONL file (detected from the content)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"rewards file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict) and whole and all(isinstance(v, list) for v in whole.values()):
        return _rewardedit(path, whole)
    if whole is not None and not isinstance(whole, dict):
        kind = type(whole).__name__
        raise ValueError(f"{path}: expected a RewardEdit JSON object or judge JSONL records, got a JSON {kind}")
    return _judge_jsonl(path, text)


def _rewardedit(path: Path, data: dict[str, Any]) -> RewardTable:
    table = RewardTable(str(path), REWARDEDIT, {}, records=len(data))
    provenance = {"source": "RewardEdit20K", "file": path.name}
    for name, entries in data.items():
        try:
            table.rewards[str(name)] = Reward.from_rewardedit(entries, provenance)
        except SampleError as e:
            table.invalid.append(f"{name}: {e}")
    return table


def _judge_jsonl(path: Path, text: str) -> RewardTable:
    table = RewardTable(str(path), JUDGE_JSONL, {})
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        table.records += 1
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("key"), str):
                raise SampleError("not an object with a string 'key'")
            status = str(record.get("status", "?"))
            table.statuses[status] += 1
            if status != "ok":
                continue
            judgement = record.get("judgement")
            if not isinstance(judgement, dict):
                raise SampleError("status 'ok' without a 'judgement' object")
            fingerprint = record.get("fingerprint") or {}
            table.rewards[record["key"]] = Reward.from_dict({**judgement, "judge": fingerprint})
        except (json.JSONDecodeError, SampleError) as e:
            table.invalid.append(f"line {number}: {e}")
    return table


class RewardJoiner:
    """Attach rewards to samples by key, then report what matched and what did not.

    A sample is matched by its key, then by ``meta["source_id"]`` (the original name: the ip2p directory name for
    ``--seeds first``, which is how RewardEdit20K names its entries). A joined reward replaces an existing one.
    """

    def __init__(self, table: RewardTable) -> None:
        self.table = table
        self.used: set[str] = set()
        self.without_reward: list[str] = []
        self.joined = 0

    def join(self, sample: EditSample) -> EditSample:
        for candidate in (sample.key, sample.meta.get("source_id")):
            if isinstance(candidate, str) and candidate in self.table.rewards:
                self.used.add(candidate)
                self.joined += 1
                return replace(sample, reward=self.table.rewards[candidate])
        if sample.reward is None:
            self.without_reward.append(sample.key)
        return sample

    def report(self) -> dict[str, Any]:
        unmatched = sorted(set(self.table.rewards) - self.used)
        return {
            "file": self.table.path,
            "format": self.table.format,
            "records": self.table.records,
            "statuses": dict(self.table.statuses),
            "invalid_records": self.table.invalid,
            "joined": self.joined,
            "unmatched_reward_keys": unmatched,
            "samples_without_reward": self.without_reward,
        }
