"""``mredit data ...``: each subcommand lives in its own module exposing ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib

SUBCOMMAND_MODULES = (
    "mredit.data.convert",  # convert
    "mredit.data.inspect",  # inspect
    "mredit.synth.cli",  # synth
    "mredit.data.encode",  # encode (precomputed latents)
)


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="<subcommand>")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:  # a real missing dependency inside the module
                raise
            continue
        module.register(sub)
