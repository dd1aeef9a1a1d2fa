"""The `mredit` dispatcher: help lists every command, each command has --help."""

import subprocess
import sys

import pytest

from mredit.cli import LIGHTNING_COMMANDS, TOOL_GROUPS


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mredit", *args], capture_output=True, text=True, timeout=120)


def test_top_level_help_lists_every_command():
    out = run("--help")
    assert out.returncode == 0
    for name in [*LIGHTNING_COMMANDS, *TOOL_GROUPS]:
        assert name in out.stdout


@pytest.mark.parametrize("group", sorted(TOOL_GROUPS))
def test_each_tool_group_has_help(group):
    out = run(group, "--help")
    assert out.returncode == 0, out.stderr
    assert f"mredit {group}" in out.stdout


def test_unknown_command_fails():
    out = run("frobnicate")
    assert out.returncode != 0
