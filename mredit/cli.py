"""The ``mredit`` entry point: LightningCLI subcommands plus tool groups.

``fit``/``validate``/``test``/``predict`` go to LightningCLI (``mredit.training.cli``). Every other
subcommand is a tool group whose module exposes ``register(subparsers)``; modules are imported only when
their group runs, so ``mredit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

LIGHTNING_COMMANDS = {
    "fit": "train a model",
    "validate": "run the validation loop",
    "test": "run the test loop",
    "predict": "write edited images for a set of shards",
}
# group name -> (module with register(subparsers), one-line help)
TOOL_GROUPS: dict[str, tuple[str, str]] = {
    "data": ("mredit.data.cli", "convert, synthesise, inspect and encode WebDataset shards"),
    "judge": ("mredit.judge.cli", "annotate rewards and evaluate edits with an LVLM or the oracle judge"),
    "edit": ("mredit.inference.cli", "edit images with a trained model"),
    "export": ("mredit.export.cli", "export a checkpoint to a diffusers-layout folder"),
    "import": ("mredit.export.import_cli", "import released weights (the official Reward-InsPix2Pix UNet)"),
}


class _TorchvisionNoticeFilter(logging.Filter):
    """mredit never uses torchvision; transformers announces its PIL fallback at import, which only confuses."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision" not in record.getMessage()


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mredit",
        description="Instruction-based image editing with multi-reward conditioning.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'mredit <command> --help' for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, help_text in LIGHTNING_COMMANDS.items():
        sub.add_parser(name, help=f"{help_text} (LightningCLI)", add_help=False)
    for name, (_, help_text) in TOOL_GROUPS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.getLogger("transformers.utils.import_utils").addFilter(_TorchvisionNoticeFilter())
    if not argv or argv[0] not in {*LIGHTNING_COMMANDS, *TOOL_GROUPS}:
        _top_parser().parse_args(argv or ["--help"])
        return 2
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS:
        from mredit.training.cli import run_lightning_cli

        run_lightning_cli([command, *rest])
        return 0
    module_name, help_text = TOOL_GROUPS[command]
    parser = argparse.ArgumentParser(prog=f"mredit {command}", description=help_text)
    importlib.import_module(module_name).register(parser)
    args = parser.parse_args(rest)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as e:  # user-facing errors: one line, no traceback
        print(f"mredit {command}: error: {e}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
