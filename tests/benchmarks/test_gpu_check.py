"""``benchmarks/gpu_check.py``, the script for a lent GPU, kept from rotting on the CPU: its ``--dry-run`` runs
every stage at tiny size, and a stage that fails, overruns or finds the budget spent is recorded, not fatal."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
STAGES = ["folder", "train_precomputed", "sample", "train_online", "train_rewards", "train_compiled"]
TRAIN_KEYS = {
    "images_per_s",
    "plain_images_per_s",
    "lightning_over_plain",
    "warmup_seconds",
    "flops_per_sample_gf",
    "peak_tflops",
    "mfu",
    "peak_memory_gib",
    "batch_size",
    "resolution",
    "precision",
}


@pytest.fixture
def gpu_check(monkeypatch):
    """The script as a module; the benchmark modules it pulls in leave ``sys.modules`` afterwards."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    before = set(sys.modules)
    import gpu_check

    yield gpu_check
    for name in set(sys.modules) - before:
        if name in {"gpu_check", "harness", "sample", "train_step", "precomputed_latents"}:
            del sys.modules[name]


def _positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_dry_run_writes_every_stage_and_the_summary(tmp_path):
    out = tmp_path / "gpu"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        str(BENCHMARKS / "gpu_check.py"),
        "--dry-run",
        "--out",
        str(out),
        "--peak-tflops",
        "2",
        "--budget-s",
        "1200",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = {name: json.loads((out / f"{name}.json").read_text()) for name in STAGES}
    for name, record in records.items():
        assert record["status"] == "ok" and record["error"] is None, (name, record.get("traceback"))
        assert record["environment"]["device_type"] == "cpu" and record["environment"]["torch"]
        assert record["seconds"] > 0
    assert records["folder"]["tiny"] is True and records["folder"]["gib_on_disk"] > 0
    assert set(records["folder"]["parameters"]) == {"unet", "vae", "text_encoder"}
    for name in STAGES:
        if not name.startswith("train_"):
            continue
        record = records[name]
        assert TRAIN_KEYS <= set(record), name
        for key in ("images_per_s", "plain_images_per_s", "flops_per_sample_gf", "mfu"):
            assert _positive(record[key]), (name, key, record[key])
        assert record["mfu"] == pytest.approx(record["images_per_s"] * record["flops_per_sample_gf"] / 2e3)
        assert record["peak_memory_gib"] is None  # CPU: no CUDA allocator to ask
    # the encoders online cost FLOPs, and so does the conditioner
    online, latents = records["train_online"], records["train_precomputed"]
    assert online["flops_per_sample_gf"] > latents["flops_per_sample_gf"]
    assert records["train_rewards"]["flops_per_sample_gf"] > latents["flops_per_sample_gf"]
    assert records["train_compiled"]["compile"] == "eager" and records["train_rewards"]["rewards"] is True
    sample = records["sample"]
    seconds = sample["seconds_per_image"]
    assert set(seconds) == {"stock diffusers", "ours, rewards off", "ours, official rewards"}
    assert all(_positive(value) for value in seconds.values())
    assert sample["ours_over_stock"] == pytest.approx(seconds["ours, rewards off"] / seconds["stock diffusers"])

    summary = (out / "summary.md").read_text()
    assert "Dry run" in summary and "torch 2." in summary
    for name in STAGES:
        assert f"| {name} | ok |" in summary
    for row in ("MFU with precomputed latents", "ours (rewards off) / stock diffusers", "torch.compile on / off"):
        line = next(line for line in summary.splitlines() if row in line)
        assert "n/a" not in line, line
    assert summary.count("pass") + summary.count("FAIL") == 3


def test_failing_overrunning_and_dying_stages_are_recorded(tmp_path, gpu_check):
    def boom() -> dict:
        raise RuntimeError("CUDA out of memory (simulated)")

    record = gpu_check.run_stage("boom", boom, 30, tmp_path, "cpu")
    assert record["status"] == "error" and record["error"] == "RuntimeError: CUDA out of memory (simulated)"
    assert json.loads((tmp_path / "boom.json").read_text()) == record

    start = time.perf_counter()
    record = gpu_check.run_stage("slow", lambda: time.sleep(60) or {}, 1.0, tmp_path, "cpu")
    assert record["status"] == "timeout" and time.perf_counter() - start < 15

    record = gpu_check.run_stage("dies", lambda: os._exit(3), 30, tmp_path, "cpu")
    assert record["status"] == "error" and "exit code 3" in record["error"]

    record = gpu_check.run_stage("fine", lambda: {"answer": 42.0}, 30, tmp_path, "cpu")
    assert record["status"] == "ok" and record["answer"] == 42.0


def test_a_spent_budget_skips_the_stages_and_still_writes_the_summary(tmp_path, gpu_check):
    settings = gpu_check.Settings.for_run(dry_run=True, peak=None)
    records = gpu_check.run_check(settings, tmp_path, budget=0.0)
    assert [record["status"] for record in records.values()] == ["skipped"] * len(STAGES)
    assert {path.stem for path in tmp_path.glob("*.json")} == set(STAGES)
    summary = (tmp_path / "summary.md").read_text()
    assert summary.count("| skipped |") == len(STAGES) and "FAIL" not in summary and "pass" not in summary
