"""``mredit eval compare``: one table (judge perspectives and metrics side by side, with intervals) and one chart."""

from __future__ import annotations

import json

import pytest

from mredit.cli import main
from mredit.eval.evaluate import PROTOCOLS, RESULTS_KIND


def _judge_results(path, yes: float, score: float) -> None:
    entry = {"yes_rate": yes, "score": score, "yes_rate_ci": [yes - 0.1, yes + 0.1], "score_ci": [score - 0.2, score]}
    overall = {p: {**entry, "n": 10} for p in ("following", "preserving", "quality")}
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"overall": overall, "judge": {"provider": "oracle"}}))


def _metrics_results(path, value: float) -> None:
    overall = {
        protocol: {m: {"mean": value, "ci": [value - 0.01, value + 0.01], "n": 10} for m in metrics}
        for protocol, metrics in PROTOCOLS.items()
    }
    path.mkdir(parents=True)
    results = {"kind": RESULTS_KIND, "protocols": list(PROTOCOLS), "overall": overall}
    (path / "results.json").write_text(json.dumps(results))


def test_compare_prints_one_table_and_draws_one_chart(tmp_path, capsys):
    _judge_results(tmp_path / "judge" / "baseline", 0.5, 3.0)
    _judge_results(tmp_path / "judge" / "reward", 0.75, 3.5)
    _metrics_results(tmp_path / "metrics" / "baseline", 0.25)
    _metrics_results(tmp_path / "metrics" / "reward", 0.125)
    dirs = [str(tmp_path / kind / model) for kind in ("judge", "metrics") for model in ("baseline", "reward")]
    assert main(["eval", "compare", *dirs, "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out.strip()
    lines = printed.splitlines()
    assert lines[0] == "| measure | better | baseline | reward |" and all(line.startswith("|") for line in lines)
    assert len(lines) == 2 + 6 + 10  # header, rule, 3 perspectives x (yes, score), 2 protocols x 5 metrics
    assert "| judge instruction following yes % | higher | 50.0 [40.0, 60.0] | 75.0 [65.0, 85.0] |" in lines
    assert "| MagicBrush L1 | lower | 0.2500 [0.2400, 0.2600] | 0.1250 [0.1150, 0.1350] |" in lines
    assert any(line.startswith("| Emu Edit CLIP-dir | higher |") for line in lines)
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0
    assert printed in (tmp_path / "cmp" / "compare.md").read_text()


def test_compare_names_and_errors(tmp_path, capsys):
    _judge_results(tmp_path / "a" / "eval", 0.5, 3.0)
    _judge_results(tmp_path / "b" / "eval", 0.25, 2.0)
    two = [str(tmp_path / "a" / "eval"), str(tmp_path / "b" / "eval")]
    assert main(["eval", "compare", *two]) == 1
    assert "give --names" in capsys.readouterr().err
    assert main(["eval", "compare", "--names", "[first, second]", *two]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "| measure | better | first | second |"
    assert main(["eval", "compare", "--results", json.dumps(two), "--names", "[x, y]"]) == 0  # the option form
    capsys.readouterr()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text("{}")
    assert main(["eval", "compare", str(tmp_path / "c")]) == 1
    assert "neither" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no results.json"):
        from mredit.eval.compare import load_results

        load_results(tmp_path / "missing")
