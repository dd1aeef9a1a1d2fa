"""``mredit import official``: the released Reward-InsPix2Pix stage-2 folder -> an mredit export folder."""

from __future__ import annotations

import argparse

from mredit.export.official_import import import_official


def run_import_official(args: argparse.Namespace) -> int:
    out = import_official(args.src, args.out)
    print(f"imported {args.src} to {out} (stock UNet + conditioner/)")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="import_command", metavar="<source>")
    official = sub.add_parser("official", help="Gstar666/Reward-InsPix2Pix stage2_reward_instruct_pix2pix folder")
    official.add_argument("--src", required=True, help="the released stage-2 folder (with unet/, vae/, ...)")
    official.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    official.set_defaults(func=run_import_official)
