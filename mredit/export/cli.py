"""``mredit export``: a Lightning checkpoint -> a diffusers-layout folder (EMA weights by default)."""

from __future__ import annotations

import argparse

from mredit.export.export import export_checkpoint


def run_export(args: argparse.Namespace) -> int:
    out = export_checkpoint(args.ckpt, args.out, use_ema=not args.no_ema)
    print(f"exported {args.ckpt} to {out}")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ckpt", required=True, help="Lightning checkpoint of an mredit module (InstructPix2Pix or SmartEdit)"
    )
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--no-ema", action="store_true", help="export the raw instead of the EMA weights")
    parser.set_defaults(func=run_export)
