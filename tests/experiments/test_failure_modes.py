"""experiments/object_edits_only/failure_modes.py classifies the oracle's following failures per category."""

import importlib.util
import json
from pathlib import Path

from mredit.synth.generate import write_synth_shards

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("failure_modes", REPO / "experiments/object_edits_only/failure_modes.py")
failure_modes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(failure_modes)


def _record(key, verdict, feedback):
    following = {"score": 5.0 if verdict else 0.0, "verdict": verdict, "feedback": feedback}
    return {"key": key, "status": "ok", "judgement": {"following": following}}


def test_modes_per_category_from_the_oracle_templates(tmp_path, capsys):
    write_synth_shards(tmp_path / "test", "test", 6, resolution=16, categories=["local", "remove", "add"])
    records = [
        _record("test_000000", False, "the red square is still red"),
        _record("test_000003", False, "the red square is gray, not blue"),
        _record("test_000001", False, "the blue circle is only partly removed"),
        _record("test_000004", True, "None"),
        _record("test_000002", False, "no green square was added at the top"),
        _record("test_000005", False, "the added square is gray, not green"),
    ]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "judgements.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    assert failure_modes.main(["--benchmark", str(tmp_path / "test"), str(tmp_path / "eval")]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "| category | n | followed % | unchanged % | partial % | wrong colour % | other % |"
    assert rows[2:] == [
        "| add | 2 | 0 | 50 | 0 | 50 | 0 |",
        "| local | 2 | 0 | 50 | 0 | 50 | 0 |",
        "| remove | 2 | 50 | 0 | 50 | 0 | 0 |",
    ]
    weak = {"verdict": False, "feedback": "the sepia edit is weak or incomplete"}
    assert failure_modes.failure_mode(weak) == "partial"
    assert failure_modes.failure_mode({"verdict": False, "feedback": "the edit looks off"}) == "other"
