"""The whole demo at a few steps: synth, oracle annotation, convert, train both, edit, oracle eval, reports."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PERSPECTIVES = ("following", "preserving", "quality")
pytestmark = pytest.mark.slow  # a few minutes on two cores: deselect with -m "not slow" (CI runs it)


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    start = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "mredit.lab.demo", "--fast", "true", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,  # about 90 s on 2 idle cores; generous for a loaded CI machine
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout, time.time() - start


def test_results_json_has_the_promised_structure(demo_out):
    out, _, _ = demo_out
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"baseline", "reward", "flaw_model", "differences", "exact"}
    assert results["flaw_model"] == "systematic"  # the demo's default
    for name in ("baseline", "reward"):
        assert set(results[name]) == set(PERSPECTIVES)
        for metrics in results[name].values():
            assert 0.0 <= metrics["yes_rate"] <= 1.0 and 0.0 <= metrics["score"] <= 5.0
            assert metrics["n"] == 14  # every test edit judged
    # paired reward - baseline intervals on the oracle's yes-rates and scores
    paired = results["differences"]["reward - baseline"]
    for perspective in PERSPECTIVES:
        for metric in ("yes_rate", "score"):
            entry = paired[perspective][metric]
            assert entry["n"] == 14 and entry["ci"][0] <= entry["mean"] <= entry["ci"][1]
            assert isinstance(entry["excludes_zero"], bool)
    # the exact metrics of every edition and of the copy-the-source reference, overall and per category
    exact = results["exact"]
    assert set(exact["models"]) == {"baseline", "reward", "reward_at_0", "copy_source"}
    for model in exact["models"].values():
        assert model["n"] == 14 and len(model["per_category"]) == 7
        for region in ("inside", "outside", "whole"):
            entry = model["overall"][region]
            assert 0.0 <= entry["ci"][0] <= entry["mean"] <= entry["ci"][1] <= 1.0
    assert exact["models"]["copy_source"]["overall"]["outside"]["mean"] == 0.0
    assert set(exact["differences"]) == {"reward - baseline"}
    assert exact["differences"]["reward - baseline"]["overall"]["inside"]["n"] == 14
    manifest = json.loads((out / "data" / "train_raw" / "manifest.json").read_text())
    assert manifest["provenance"]["flaw_model"] == "systematic"


def test_every_promised_file_exists(demo_out):
    out, stdout, _ = demo_out
    test_keys = {json.loads(line)["key"] for line in (out / "eval" / "baseline" / "judgements.jsonl").open()}
    assert len(test_keys) == 14
    for model in ("baseline", "reward", "reward_at_0"):  # the last: the reward model at rewards (0, 0, 0)
        assert {p.stem for p in (out / "edits" / model).glob("*.png")} == test_keys
        assert (out / "eval" / model / "results.json").exists()
    for model in ("baseline", "reward"):
        assert (out / "runs" / model / "final.ckpt").exists()
    for name in ("results.md", "grid.png", "bars.png", "exact.png"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "results.md").read_text()
    assert "## Per category" in report and "| local | baseline |" in report and "| local | reward |" in report
    assert "## Controllability" in report and "| reward at (0, 0, 0) |" in report
    assert "| baseline |" in stdout and "| reward |" in stdout  # the table is printed at the end
    assert "## Exact metrics" in report and "| copy the source | 14 |" in report
    assert "## Reward - baseline, paired" in report and "| exact L1 inside the edit (lower is better) |" in report
    assert "Distance to the exact targets" in stdout and "interval excludes 0" in stdout
    # the MagicBrush metrics against the exact targets, with tiny random CLIP and DINO: flagged as a wiring check
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"baseline", "reward", "reward_at_0"}
    for result in metrics.values():
        l1, dino = result["overall"]["magicbrush"]["l1"], result["overall"]["magicbrush"]["dino"]
        assert 0.0 <= l1["mean"] <= 1.0 and l1["n"] == 14 and dino["n"] == 14
        assert "wiring check" in result["note"]
    assert "## Standard metrics" in report and "wiring check" in report and "| reward at (0, 0, 0) | 0." in report
    assert "MagicBrush metrics against the exact targets" in stdout


def test_rewards_were_annotated_and_joined(demo_out):
    out, _, _ = demo_out
    manifest = json.loads((out / "data" / "train" / "manifest.json").read_text())
    assert manifest["num_samples"] == 64 and manifest["reward_coverage"]["with_reward"] == 64


def test_a_rerun_reuses_everything(demo_out):
    out, _, first_duration = demo_out
    start = time.time()
    result = subprocess.run([sys.executable, "-m", "mredit.lab.demo", "--fast", "true", "--out", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data: reusing" in result.stdout
    assert "training 2 model(s)" not in result.stdout and "editing the" not in result.stdout
    assert time.time() - start < first_duration
