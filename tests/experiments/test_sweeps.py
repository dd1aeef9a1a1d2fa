"""Each W&B sweep renders, as the wandb agent does (``${env} ${program} ... --key=value``), into a command line
that our LightningCLI parses (``--print_config``: parsing only, no training)."""

import math
from pathlib import Path

import pytest
import yaml

from mredit.cli import main

REPO = Path(__file__).resolve().parents[2]
SWEEPS = sorted((REPO / "experiments").glob("*/sweep.yaml"))
METHODS = {"grid", "random", "bayes"}


def sample_value(spec: dict):
    """One value per parameter, the way the agent would draw one (the first / the geometric middle)."""
    if "values" in spec:
        return spec["values"][-1]
    if "value" in spec:
        return spec["value"]
    if spec.get("distribution") == "log_uniform_values":
        return math.sqrt(spec["min"] * spec["max"])
    return (spec["min"] + spec["max"]) / 2


def render_command(sweep: dict) -> list[str]:
    args = [f"--{name}={sample_value(spec)}" for name, spec in sweep["parameters"].items()]
    command = []
    for part in sweep["command"]:
        if part == "${args}":
            command += args
        else:
            command.append(part.replace("${env}", "/usr/bin/env").replace("${program}", sweep["program"]))
    return command


def test_there_are_sweeps():
    assert len(SWEEPS) >= 2


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.parent.name)
def test_sweep_is_well_formed(path):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["method"] in METHODS and sweep["metric"]["goal"] in {"minimize", "maximize"}
    assert sweep["program"] == "mredit" and "${args}" in sweep["command"]
    for name, spec in sweep["parameters"].items():
        assert {"values", "value", "distribution"} & set(spec), name
    swept = " ".join(sweep["parameters"])
    assert "learning_rate" in swept and "variant" in swept


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.parent.name)
def test_rendered_sweep_command_parses(path, monkeypatch, capsys):
    sweep = yaml.safe_load(path.read_text())
    command = render_command(sweep)
    assert command[:3] == ["/usr/bin/env", "mredit", "fit"]
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_info:
        main([*command[2:], "--print_config"])
    printed = capsys.readouterr()
    assert exit_info.value.code in (0, None), printed.err
    config = yaml.safe_load(printed.out)
    reward = config["trainer"]["callbacks"][-1]
    assert reward["class_path"] == "mredit.callbacks.reward_conditioning.RewardConditioning"
    for name, spec in sweep["parameters"].items():
        node = config
        for part in name.split("."):
            node = node[-1] if isinstance(node, list) else node
            node = node[part]
        assert node == pytest.approx(sample_value(spec)) if isinstance(node, float) else node == sample_value(spec)
