"""``python -m mredit.lab.demo``'s command line: the budgets it resolves, its help and its one-line errors."""

import pytest

from mredit.lab import demo


@pytest.fixture
def budgets(monkeypatch):
    calls = []
    monkeypatch.setattr(demo, "run_demo", lambda out, **settings: calls.append((out, settings)) or {})
    return calls


def test_fast_is_the_ci_budget_and_flags_override_either(budgets, tmp_path):
    assert demo.main(["--fast", "true", "--out", str(tmp_path), "--max_steps", "7"]) == 0
    out, settings = budgets[-1]
    fixed = {"parallel": 2, "flaw_model": "systematic"}  # the demo trains on the systematic flaws by default
    assert out == tmp_path and settings == {**demo.FAST, "max_steps": 7, "seed": 0, **fixed}
    assert demo.main(["--num_inference_steps", "10", "--seed", "3"]) == 0
    out, settings = budgets[-1]
    assert str(out) == "reports/demo"
    assert settings == {**demo.DEFAULTS, "num_inference_steps": 10, "seed": 3, **fixed}


def test_the_flaw_model_is_selectable(budgets, capsys):
    assert demo.main(["--fast", "true", "--flaw_model", "random"]) == 0
    assert budgets[-1][1]["flaw_model"] == "random"
    assert demo.main(["--flaw_model", "wild"]) != 0
    assert "flaw_model" in capsys.readouterr().err and len(budgets) == 1


def test_help_comes_from_the_docstring(capsys):
    assert demo.main(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert "--num_inference_steps" in help_text and "sampling steps of the edits" in help_text


def test_errors_are_one_line(monkeypatch, capsys):
    def fail(out, **settings):
        raise FileNotFoundError("no such config")

    monkeypatch.setattr(demo, "run_demo", fail)
    assert demo.main(["--fast", "true"]) == 1
    assert capsys.readouterr().err == "python -m mredit.lab.demo: error: no such config\n"


def test_the_configs_exist():
    assert demo.BASELINE_CONFIG.is_file() and demo.REWARD_CONFIG.is_file()
