"""Does a trained editing model read its instruction? Edits that differ only in the instruction, against edits
that differ only in the sampling seed.

    python experiments/smartedit_reward/probe_instruction_reading.py --shards TEST_SHARDS RUN/final.ckpt ...

For each checkpoint (any mredit module: SmartEdit or InstructPix2Pix), the first ``--num-sources`` test sources
are edited with every instruction of a family (seed 0) and with one instruction under ``--num-seeds`` seeds. The
table gives the mean pairwise L1 (0..255) between the edits of one source, averaged over sources: a model that
reads its instruction moves its edit with the instruction about as much as with the seed, or more; one that does
not gives an instruction spread near 0. For SmartEdit it also prints the relative spread (mean pairwise L2 over
the mean norm) of the UNet text condition for the background family, the stage where the instruction is lost.
"""

from __future__ import annotations

import argparse
import itertools
from itertools import islice

import numpy as np
import torch

from mredit.data.reader import read_samples
from mredit.editing.service import EditOptions, open_model

FAMILIES = {
    "background colour": [f"make the background {c}" for c in ("red", "blue", "green", "yellow", "purple")],
    "global adjustment": [
        "make the image brighter",
        "make the image darker",
        "invert the colours",
        "apply a sepia filter",
        "make it black and white",
    ],
}


EDIT = {"num_inference_steps": 25, "scheduler": "ddim", "text_guidance_scale": 1.0, "image_guidance_scale": 1.0}


def mean_pairwise(arrays: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(a - b).mean() for a, b in itertools.combinations(arrays, 2)]))


def relative_spread(condition: torch.Tensor) -> float:
    flat = condition.flatten(1)
    pairs = [(flat[i] - flat[j]).norm().item() for i, j in itertools.combinations(range(len(flat)), 2)]
    return float(np.mean(pairs) / flat.norm(dim=1).mean().item())


def probe(model, sources, num_seeds: int) -> dict[str, float]:
    """``model``: an opened model (``open_model``); edited as the experiments edit (DDIM 25, guidance 1)."""

    def edit(source, instruction: str, seed: int = 0) -> np.ndarray:
        options = EditOptions(**EDIT, seed=seed)
        return np.asarray(model.edit(source, instruction, options), dtype=np.float32)

    row = {}
    for family, instructions in FAMILIES.items():
        spreads = []
        for source in sources:
            spreads.append(mean_pairwise([edit(source, instruction) for instruction in instructions]))
        row[family] = float(np.mean(spreads))
    seed_spreads = []
    for source in sources:
        edits = [edit(source, FAMILIES["background colour"][0], seed) for seed in range(num_seeds)]
        seed_spreads.append(mean_pairwise(edits))
    row["seed"] = float(np.mean(seed_spreads))
    module = model.module
    if module is not None and hasattr(module, "condition"):
        pixels = torch.from_numpy(np.asarray(sources[0], dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
        images = pixels[None].expand(5, -1, -1, -1).contiguous()
        latent_size = (images.shape[-2] // 8, images.shape[-1] // 8)
        with torch.no_grad(), module.ema_weights():
            text = module.condition(images, FAMILIES["background colour"], latent_size, False).text
        row["condition spread %"] = 100 * relative_spread(text)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--shards", required=True, help="test shards (their sources are edited)")
    parser.add_argument("--num-sources", type=int, default=10)
    parser.add_argument("--num-seeds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sources = [sample.source for sample in islice(read_samples(args.shards), args.num_sources)]
    rows = {}
    for path in args.checkpoints:
        with open_model(path) as model:
            rows[path] = probe(model, sources, args.num_seeds)
    columns = list(next(iter(rows.values())))
    print("| checkpoint | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for path, row in rows.items():
        print(f"| {path} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
