"""The ``mredit`` entry point: LightningCLI subcommands plus the tool command groups.

``fit``/``validate``/``test``/``predict`` go to LightningCLI (``mredit.training.lightning_cli``). Every other
command is a tool group: a module of this package whose commands are typed, documented functions (see
``mredit.cli.parsing``). A group's module is imported only when the group runs, so ``mredit --help`` is fast.
"""

from __future__ import annotations

import importlib
import logging
import sys

from mredit.cli.parsing import CommandGroup, run_command

LIGHTNING_COMMANDS = {
    "fit": "train a model",
    "validate": "run the validation loop",
    "test": "run the test loop",
    "predict": "write edited images for a set of shards",
}
# command -> (module, its attribute holding the command (a function or a CommandGroup), one-line help)
TOOL_GROUPS: dict[str, tuple[str, str, str]] = {
    "data": ("mredit.cli.data", "COMMANDS", "convert, synth, inspect, encode: make and check WebDataset shards"),
    "judge": (
        "mredit.cli.judge",
        "COMMANDS",
        "annotate, export, eval, batch, convert-benchmark: rewards and evaluation by an LVLM or the oracle",
    ),
    "eval": (
        "mredit.cli.eval",
        "COMMANDS",
        "metrics, compare, convert-benchmark: MagicBrush and Emu Edit metrics, tables across models",
    ),
    "edit": ("mredit.cli.edit", "COMMANDS", "edit images with a trained model"),
    "serve": ("mredit.cli.serve", "COMMANDS", "serve an interactive editor page with reward sliders (gradio)"),
    "export": ("mredit.cli.export", "COMMANDS", "export a checkpoint to a diffusers-layout folder"),
    "import": ("mredit.cli.export", "IMPORT_COMMANDS", "import released weights: official (Reward-InsPix2Pix)"),
    "init-random": ("mredit.cli.init_random", "COMMANDS", "random-weight SD1.5 / LLaVA folders for wiring checks"),
}
_TOP = CommandGroup(
    "Instruction-based image editing with multi-reward conditioning.\n\n"
    "Run 'mredit <command> --help' for the options of a command.",
    # stand-ins that only carry the help line; each command builds its own parser when it runs
    {
        **{name: CommandGroup(f"{text} (LightningCLI)") for name, text in LIGHTNING_COMMANDS.items()},
        **{name: CommandGroup(text) for name, (_, _, text) in TOOL_GROUPS.items()},
    },
)


class _TorchvisionNoticeFilter(logging.Filter):
    """mredit never uses torchvision; transformers announces its PIL fallback at import, which only confuses."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision" not in record.getMessage()


def tool_command(name: str):
    """The command (function or ``CommandGroup``) of the tool group ``name``; imports its module."""
    module_name, attribute, _ = TOOL_GROUPS[name]
    return getattr(importlib.import_module(module_name), attribute)


def main(argv: list[str] | None = None) -> int:
    """Run ``mredit <command> ...``; returns the exit code (0 ok, 1 user error, 2 bad command line)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.getLogger("transformers.utils.import_utils").addFilter(_TorchvisionNoticeFilter())
    if not argv:
        argv = ["--help"]
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS:
        from mredit.training.lightning_cli import run_lightning_cli  # lightning takes seconds to import

        run_lightning_cli([command, *rest])
        return 0
    if command in TOOL_GROUPS:
        return run_command(f"mredit {command}", tool_command(command), rest)
    return run_command("mredit", _TOP, argv)  # --help, or an unknown command


if __name__ == "__main__":
    sys.exit(main())
