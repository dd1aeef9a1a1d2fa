"""``mredit edit``: edit one image, a folder of images, or the samples of a set of shards.

The model is an export folder (``mredit export`` / ``mredit import official``) or a Lightning ``.ckpt`` of an
``InstructPix2PixModule`` (its EMA weights unless ``--no-ema``) or of another mredit module with an ``edit``
method (SmartEdit). Each image gets its own generator seeded with
``--seed``, so a result does not depend on the order of a batch run.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from PIL import Image

from mredit.inference.pipeline import AUTO_SCHEDULER, SCHEDULER_CHOICES, RewardEditPipeline
from mredit.inference.sizing import fit_image, load_image

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def parse_scores(text: str) -> tuple[float, float, float]:
    """``"5,5,5"`` -> (5.0, 5.0, 5.0): three numbers in [0, 5] (following, preserving, quality)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError as e:
        raise ValueError(f"--scores must be three comma-separated numbers, got {text!r}") from e
    if len(values) != 3 or not all(0.0 <= v <= 5.0 for v in values):
        raise ValueError(f"--scores must be three numbers in [0, 5] (following,preserving,quality), got {text!r}")
    return values


Editor = Callable[[Image.Image, str], Image.Image]


@contextmanager
def open_editor(args: argparse.Namespace) -> Iterator[Editor]:
    """An ``(image, instruction) -> edited image`` function for ``--model``.

    Export folders and InstructPix2Pix checkpoints run ``RewardEditPipeline`` (EMA weights swapped in unless
    ``--no-ema``); other modules (SmartEdit) run their own ``edit(images, instructions, **options)``.
    """
    path = Path(args.model)
    options = _sampling(args)
    if path.is_dir():
        pipe = RewardEditPipeline.from_pretrained(path, scheduler=args.scheduler)
        yield lambda image, instruction: _edit_with_pipeline(pipe, image, instruction, args, options)
        return
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {args.model} (expected an export folder or a .ckpt file)")
    from mredit.export.export import load_module_from_checkpoint
    from mredit.models.instruct_pix2pix import InstructPix2PixModule

    module = load_module_from_checkpoint(path)
    if isinstance(module, InstructPix2PixModule):
        with module.ema_weights() if not args.no_ema else nullcontext():
            pipe = RewardEditPipeline.from_module(module, scheduler=args.scheduler)
            yield lambda image, instruction: _edit_with_pipeline(pipe, image, instruction, args, options)
        return
    if not hasattr(module, "edit"):
        raise ValueError(f"{type(module).__name__} has no edit(images, instructions, ...) method")
    if args.reward_scale != 1.0 or args.no_ema:
        raise ValueError(f"{type(module).__name__}: --reward-scale and --no-ema apply to InstructPix2Pix models only")
    module_options = dict(
        scores=None if options["scores"] is None else list(options["scores"]),
        feedback=options["feedback"],
        steps=args.steps,
        text_guidance=args.text_scale,
        image_guidance=args.image_scale,
        seed=args.seed,
        scheduler=args.scheduler,
        resolution=args.resolution,
    )
    yield lambda image, instruction: module.edit([image], [instruction], **module_options)[0]


def _sampling(args: argparse.Namespace) -> dict:
    return dict(
        scores=None if args.scores is None else parse_scores(args.scores),
        feedback=list(args.feedback) if args.feedback else None,
        num_inference_steps=args.steps,
        text_guidance_scale=args.text_scale,
        image_guidance_scale=args.image_scale,
        reward_guidance_scale=args.reward_scale,
    )


def _edit_with_pipeline(pipe: RewardEditPipeline, image, instruction: str, args: argparse.Namespace, options: dict):
    fitted = fit_image(image, resolution=args.resolution, multiple=pipe.size_multiple)
    generator = torch.Generator(device=pipe.device).manual_seed(args.seed)
    return pipe(fitted, instruction, generator=generator, **options)[0]


def _shard_samples(spec: list[str], counter):
    from mredit.data.pipeline import decode_or_skip, iter_raw_samples, resolve_shards

    yield from decode_or_skip(iter_raw_samples(resolve_shards(spec), counter), counter)


def run_edit(args: argparse.Namespace) -> int:
    sources = [args.image is not None, args.images is not None, args.shards is not None]
    if sum(sources) != 1:
        raise ValueError("give exactly one of --image, --images DIR or --shards SPEC")
    if (args.image or args.images) and not args.instruction:
        raise ValueError("--instruction is required with --image/--images")
    if args.image and not args.out:
        raise ValueError("--out is required with --image")
    if not args.image and not args.out_dir:
        raise ValueError("--out-dir is required with --images/--shards")
    with open_editor(args) as edit_one:
        if args.image:
            result = edit_one(load_image(args.image), args.instruction)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            result.save(args.out)
            print(f"wrote {args.out}")
            return 0
        out_dir = Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = skipped = 0
        if args.images:
            folder = Path(args.images)
            if not folder.is_dir():
                raise FileNotFoundError(f"--images: not a folder: {folder}")
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"--images: no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
            for file in files:
                try:
                    image = load_image(file)
                except ValueError as e:
                    log.warning("skipping %s", e)
                    skipped += 1
                    continue
                edit_one(image, args.instruction).save(out_dir / f"{file.stem}.png")
                written += 1
        else:
            from mredit.data.pipeline import SkipCounter
            from mredit.inference.predict import image_filename

            counter = SkipCounter()
            for sample in _shard_samples(args.shards, counter):
                instruction = args.instruction or sample.instruction
                edit_one(sample.source, instruction).save(out_dir / image_filename(sample.key))
                written += 1
            skipped = counter.total
    print(f"wrote {written} images to {out_dir}" + (f", skipped {skipped} unreadable" if skipped else ""))
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="export folder or Lightning .ckpt")
    source = parser.add_argument_group("input (one of)")
    source.add_argument("--image", help="one input image")
    source.add_argument("--images", help="a folder of input images (batch mode, with --out-dir)")
    source.add_argument("--shards", nargs="+", help="shard spec(s): edit each sample's source by its instruction")
    parser.add_argument("--instruction", help="the edit instruction (overrides the shards' own with --shards)")
    parser.add_argument("--out", help="output image (with --image)")
    parser.add_argument("--out-dir", help="output folder (batch modes): <name>.png per input")
    parser.add_argument(
        "--scores", default=None, help="following,preserving,quality in [0, 5] (default: the best, 5,5,5)"
    )
    parser.add_argument(
        "--feedback",
        nargs=3,
        metavar=("FOLLOWING", "PRESERVING", "QUALITY"),
        help='failure text per perspective (default "None" each, i.e. "None; None; None" joined)',
    )
    parser.add_argument("--steps", type=int, default=30, help="sampling steps (default 30, the paper's)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--scheduler",
        choices=SCHEDULER_CHOICES,
        default=AUTO_SCHEDULER,
        help="sampler (default auto: euler_a, or ddim for a model that predicts x0)",
    )
    parser.add_argument("--text-scale", type=float, default=7.5, help="instruction guidance scale")
    parser.add_argument("--image-scale", type=float, default=1.5, help="source image guidance scale")
    parser.add_argument("--reward-scale", type=float, default=1.0, help="reward guidance (needs a null condition)")
    parser.add_argument("--resolution", type=int, default=512, help="long side of the resized input (default 512)")
    parser.add_argument("--no-ema", action="store_true", help="with a .ckpt: use the raw instead of the EMA weights")
    parser.set_defaults(func=run_edit)
