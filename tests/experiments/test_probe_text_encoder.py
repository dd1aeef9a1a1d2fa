"""experiments/local_edit_words/probe_text_encoder.py runs on untrained tiny models and prints one row per family."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_probe_prints_a_distance_per_family_and_model():
    script = REPO / "experiments" / "local_edit_words" / "probe_text_encoder.py"
    result = subprocess.run(
        [sys.executable, str(script), "--untrained", "characters", "--untrained", "synth_words"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| family | untrained, characters | untrained, synth_words |"
    assert len(rows) == 1 + 5
    for row in rows[1:]:
        distances = [float(cell) for cell in row.strip("| ").split(" | ")[1:]]
        assert len(distances) == 2 and all(d > 0 for d in distances)
