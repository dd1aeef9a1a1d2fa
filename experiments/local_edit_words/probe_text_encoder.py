"""How far apart a trained tiny text encoder puts instructions that differ in one colour word.

    python experiments/local_edit_words/probe_text_encoder.py [--untrained characters] RUN/final.ckpt ...

Prints, per family of instructions, the mean pairwise L2 distance between their encodings (the [L, D] hidden
states the UNet cross-attends to, EMA weights). A family whose colour word barely moves the encoding cannot steer
the edit, whatever the UNet learns.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from mredit.models.ip2p import InstructPix2PixModule

COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "pink", "cyan", "brown", "white", "black", "gray")
FAMILIES = {
    "local, the new colour varies": [f"make the red square {c}" for c in COLORS if c != "red"],
    "local, the object's colour varies": [f"make the {c} square blue" for c in COLORS if c != "blue"],
    "remove, the object's colour varies": [f"remove the {c} square" for c in COLORS],
    "background, the colour varies": [f"make the background {c}" for c in COLORS],
    "global and style, the adjustment varies": [
        "make the image brighter",
        "make the image darker",
        "increase the contrast",
        "invert the colours",
        "apply a sepia filter",
        "posterize the image",
        "make it black and white",
    ],
}


def mean_pairwise_distance(encodings: torch.Tensor) -> float:
    pairs = itertools.combinations(range(len(encodings)), 2)
    distances = [(encodings[i] - encodings[j]).norm().item() for i, j in pairs]
    return sum(distances) / len(distances)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="*", help="InstructPix2PixModule checkpoints (final.ckpt of a run)")
    parser.add_argument(
        "--untrained", action="append", default=[], choices=["characters", "synth_words"], help="add the recipe at init"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    columns = [f"untrained, {kind}" for kind in args.untrained] + args.checkpoints
    print("| family | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    modules = []
    for kind in args.untrained:
        torch.manual_seed(0)  # the tiny recipe's seed_everything
        modules.append(InstructPix2PixModule(tiny_tokenizer=kind, train_text_encoder=True).eval())
    modules += [InstructPix2PixModule.load_from_checkpoint(p, map_location="cpu").eval() for p in args.checkpoints]
    for family, texts in FAMILIES.items():
        cells = []
        for module in modules:
            with torch.no_grad(), module.ema_weights():
                cells.append(f"{mean_pairwise_distance(module.encode_instructions(texts)):.1f}")
        print(f"| {family} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
