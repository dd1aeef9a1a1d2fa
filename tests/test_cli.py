"""The `mredit` dispatcher: the help lists every command, every (nested) subcommand has a working --help,
errors are one line with exit code 2 (command line) or 1 (user error)."""

import subprocess
import sys

import pytest

from mredit.cli import LIGHTNING_COMMANDS, TOOL_GROUPS, main
from mredit.cli.main import tool_command
from mredit.cli.parsing import CommandGroup


def _paths(command, prefix):
    """Every command path under ``prefix``: groups and their (nested) subcommands."""
    yield prefix
    if isinstance(command, CommandGroup):
        for name, sub in command.commands.items():
            yield from _paths(sub, [*prefix, name])


TOOL_PATHS = [path for group in TOOL_GROUPS for path in _paths(tool_command(group), [group])]


def test_top_level_help_is_fast_and_lists_every_command():
    code = "import sys; from mredit.cli import main; main(['--help']); print(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for name in [*LIGHTNING_COMMANDS, *TOOL_GROUPS]:
        assert f"    {name} " in out.stdout
    assert "'torch'" not in out.stdout  # no heavy import for the help


def test_every_subcommand_path_is_covered():
    expected = {"data convert", "data synth", "data inspect", "data encode", "judge batch run", "import official"}
    assert expected <= {" ".join(path) for path in TOOL_PATHS}
    assert {"judge annotate", "judge export", "judge eval", "judge convert-benchmark", "edit", "export"} <= {
        " ".join(path) for path in TOOL_PATHS
    }


@pytest.mark.parametrize("path", TOOL_PATHS, ids=" ".join)
def test_every_subcommand_has_help(path, capsys):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mredit ")
    command = tool_command(path[0])
    for name in path[1:]:
        command = command.commands[name]
    summary = command.description if isinstance(command, CommandGroup) else command.__doc__
    assert summary.strip().splitlines()[0] in out  # the help comes from the docstring


def test_unknown_command_and_bad_options_are_one_line_errors(capsys):
    assert main(["frobnicate"]) == 2
    assert capsys.readouterr().err.startswith("mredit: error: ")
    assert main(["data", "synth", "--out", "x", "--num", "2", "--bogus", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mredit data synth: error: ") and "--bogus" in err and err.count("\n") == 1
    assert main(["data", "synth", "--out", "x", "--num", "lots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mredit data synth: error: ") and "num" in err and err.count("\n") == 1
    assert main(["edit", "--model", "m", "--image", "x", "--scores", "[5, 5]"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mredit edit: error: ") and "scores" in err and err.count("\n") == 1
    assert main(["judge", "batch"]) == 2  # a group without its step
    assert capsys.readouterr().err.count("\n") == 1


def test_user_errors_are_one_line_with_exit_code_1(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path), "--num", "0"]) == 1
    assert capsys.readouterr().err == "mredit data synth: error: --num must be >= 1, got 0\n"
    annotate = ["judge", "annotate", "--shards", str(tmp_path), "--out", str(tmp_path / "a"), "--judge", "oracle"]
    assert main([*annotate, "--lvlm.model", "x"]) == 1
    assert "the oracle judge takes no --lvlm.model" in capsys.readouterr().err
    assert main(["edit", "--model", str(tmp_path / "none"), "--image", "x", "--instruction", "x", "--out", "o"]) == 1
    assert "model not found" in capsys.readouterr().err


def test_synth_then_inspect_without_out_writes_nothing(tmp_path, monkeypatch, capsys):
    shards = tmp_path / "shards"
    argv = ["data", "synth", "--out", str(shards), "--num", "3", "--resolution", "8", "--split", "test"]
    assert main([*argv, "--categories", "[local, remove]", "--with_rewards", "true", "--shard_size", "2"]) == 0
    assert '"num_samples": 3, "shards": 2' in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert main(["data", "inspect", "--shards", str(shards)]) == 0
    printed = capsys.readouterr().out
    assert "3 samples in 2 shards" in printed and "wrote" not in printed
    assert sorted(tmp_path.rglob("*")) == before
