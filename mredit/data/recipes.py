"""The shard folders the tiny configs read by default, and the commands that make them.

The Makefile has one rule per folder (``make synth`` makes all four; ``make train CONFIG=<tiny config>`` makes
those its config names); ``tests/training/test_make_train.py`` checks that its commands are these. A missing folder is
named with its command in the one-line error of ``resolve_shards``.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath

# folder (relative to the repository root) -> the options of `mredit data synth --out <folder>` that make it
TINY_CONFIG_SHARDS: dict[str, str] = {
    "data/synth/train": "--split train --num 2000",
    "data/synth/val": "--split test --num 64 --seed 1",
    "data/synth_reward/train": "--split train --num 2000 --with_rewards true",
    "data/synth_reward/val": "--split test --num 64 --seed 1 --with_rewards true",
}


def synth_command(path: str | os.PathLike) -> str | None:
    """The command that makes ``path`` when it is (or ends in) a tiny config's default shard folder, else None."""
    text = os.fspath(path).strip()
    normal = PurePosixPath(os.path.normpath(text).replace(os.sep, "/")).as_posix()
    for folder, options in TINY_CONFIG_SHARDS.items():
        if normal == folder or normal.endswith("/" + folder):
            return f"mredit data synth --out {text} {options}"
    return None


def how_to_make(path: str | os.PathLike) -> str:
    """``"; make it with ..."`` for a tiny config's default shard folder (to end a one-line error), else ``""``."""
    command = synth_command(path)
    if command is None:
        return ""
    return f"; make it with `make synth` (all the tiny configs' shards) or `{command}`"
