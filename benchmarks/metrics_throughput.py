"""Standard-metrics throughput and device agreement: CLIP ViT-B/32- and DINO ViT-S/16-shaped models (random weights,
built in code: nothing is downloaded), as ``mredit eval metrics`` runs them.

1. times the CPU preprocessing (resize, crop, normalise) and the embedding of ``--num`` images of ``--size`` px on
   ``--device`` in batches of ``--batch_size``, per model, and prints images/s and edits/s of the MagicBrush
   protocol (each edit and its target through both models);
2. with ``--check true`` (and a GPU), embeds the first 16 images on the CPU too and prints the largest difference
   of the CLIP-I and DINO cosine similarities between the devices (the encoders turn TF32 off, so it should be
   about 1e-6).

    python benchmarks/metrics_throughput.py --device cpu --num 64
    python benchmarks/metrics_throughput.py --device cuda --num 1024 --batch_size 64 --check true --json out.json

Random weights give representative timings, not meaningful similarities.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

from mredit.eval.encoders import ClipEncoder, DinoEncoder
from mredit.eval.metrics import clip_pixels, cosine, dino_pixels


def _images(num: int, size: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size * 3 // 4, 3), dtype=np.uint8)) for _ in range(num)]


def _models(device: str) -> tuple[ClipEncoder, DinoEncoder]:
    torch.manual_seed(0)
    clip = ClipEncoder(CLIPModel(CLIPConfig()), None, "random CLIP ViT-B/32", device)  # the default config is B/32
    vit = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536, patch_size=16)
    dino = DinoEncoder(ViTModel(vit, add_pooling_layer=False), "random DINO ViT-S/16", device)
    return clip, dino


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num", type=int, default=256)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--check", type=lambda v: v.lower() == "true", default=False)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    images = _images(args.num, args.size)
    clip, dino = _models(args.device)
    report: dict = {"device": str(clip.device), "num": args.num, "size": args.size, "batch_size": args.batch_size}
    if clip.device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(clip.device)
    start = time.perf_counter()
    for i in range(0, len(images), args.batch_size):
        clip_pixels(images[i : i + args.batch_size], 224), dino_pixels(images[i : i + args.batch_size])
    report["preprocess_images_per_s"] = len(images) / (time.perf_counter() - start)
    for name, encoder in (("clip", clip), ("dino", dino)):
        encoder.encode_images(images[: args.batch_size])  # warm-up
        _sync(encoder.device)
        start = time.perf_counter()
        for i in range(0, len(images), args.batch_size):
            encoder.encode_images(images[i : i + args.batch_size])
        _sync(encoder.device)
        report[f"{name}_images_per_s"] = len(images) / (time.perf_counter() - start)
    per_image = 1 / report["clip_images_per_s"] + 1 / report["dino_images_per_s"]
    report["magicbrush_edits_per_s"] = 1 / (2 * per_image)  # edit and target through both models
    if args.check and clip.device.type != "cpu":
        cpu_clip, cpu_dino = _models("cpu")
        sample = images[:16]
        worst = {}
        for name, on_device, on_cpu in (("clip_i", clip, cpu_clip), ("dino", dino, cpu_dino)):
            a, b = on_device.encode_images(sample), on_cpu.encode_images(sample)
            similarity_device = cosine(a[:8], a[8:])
            similarity_cpu = cosine(b[:8], b[8:])
            worst[name] = float((similarity_device - similarity_cpu).abs().max())
        report["max_abs_difference_vs_cpu"] = worst
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
