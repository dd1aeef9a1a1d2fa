"""The ``mredit`` command line: LightningCLI subcommands and the tool commands, all built from typed signatures."""

from mredit.cli.main import LIGHTNING_COMMANDS, TOOL_GROUPS, main

__all__ = ["LIGHTNING_COMMANDS", "TOOL_GROUPS", "main"]
