"""``mredit edit``: edit one image, a folder of images, or the samples of a set of shards.

The model is an export folder (``mredit export`` / ``mredit import official``) or a Lightning ``.ckpt`` of an
``InstructPix2PixModule`` (its EMA weights unless ``--use_ema false``) or of another mredit module with an
``edit`` method (SmartEdit). Each image gets its own generator seeded with ``--seed``, so a result does not
depend on the order of a batch run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from mredit.callbacks.edited_image_writer import image_filename
from mredit.data.reader import SkipCounter, read_samples
from mredit.models.ip2p import InstructPix2PixModule
from mredit.models.loading import load_module_from_checkpoint
from mredit.pipelines.reward_edit import AUTO_SCHEDULER, SCHEDULER_CHOICES, RewardEditPipeline
from mredit.pipelines.sizing import fit_image, load_image

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

Editor = Callable[[Image.Image, str], Image.Image]


def check_scores(scores: Sequence[float]) -> tuple[float, float, float]:
    """Three numbers in [0, 5] (following, preserving, quality), as floats."""
    values = tuple(float(v) for v in scores)
    if len(values) != 3 or not all(0.0 <= v <= 5.0 for v in values):
        raise ValueError(f"--scores must be three numbers in [0, 5] (following, preserving, quality), got {scores}")
    return values


@contextmanager
def open_editor(
    model: str, use_ema: bool, scheduler: str, seed: int, resolution: int, **sampling: Any
) -> Iterator[Editor]:
    """An ``(image, instruction) -> edited image`` function for ``model``.

    Export folders and InstructPix2Pix checkpoints run ``RewardEditPipeline`` (EMA weights swapped in when
    ``use_ema``); other modules (SmartEdit) run their own ``edit(images, instructions, **options)``. ``sampling``:
    ``scores``, ``feedback``, ``num_inference_steps`` and the three guidance scales.
    """
    path = Path(model)
    if path.is_dir():
        pipe = RewardEditPipeline.from_pretrained(path, scheduler=scheduler)
        yield lambda image, instruction: _edit_with_pipeline(pipe, image, instruction, seed, resolution, sampling)
        return
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {model} (expected an export folder or a .ckpt file)")
    module = load_module_from_checkpoint(path)
    if isinstance(module, InstructPix2PixModule):
        with module.ema_weights() if use_ema else nullcontext():
            pipe = RewardEditPipeline.from_module(module, scheduler=scheduler)
            yield lambda image, instruction: _edit_with_pipeline(pipe, image, instruction, seed, resolution, sampling)
        return
    if not hasattr(module, "edit"):
        raise ValueError(f"{type(module).__name__} has no edit(images, instructions, ...) method")
    reward_guidance_scale = sampling.pop("reward_guidance_scale")
    if reward_guidance_scale != 1.0 or not use_ema:
        raise ValueError(
            f"{type(module).__name__}: --reward_guidance_scale and --use_ema false apply to InstructPix2Pix models only"
        )
    if sampling["scores"] is not None:
        sampling["scores"] = list(sampling["scores"])
    options = dict(**sampling, seed=seed, scheduler=scheduler, resolution=resolution)
    yield lambda image, instruction: module.edit([image], [instruction], **options)[0]


def _edit_with_pipeline(
    pipe: RewardEditPipeline, image: Image.Image, instruction: str, seed: int, resolution: int, sampling: dict
) -> Image.Image:
    fitted = fit_image(image, resolution=resolution, multiple=pipe.size_multiple)
    generator = torch.Generator(device=pipe.device).manual_seed(seed)
    return pipe(fitted, instruction, generator=generator, **sampling)[0]


def edit(
    model: str,
    image: str | None = None,
    images: str | None = None,
    shards: str | list[str] | None = None,
    out: str | None = None,
    out_dir: str | None = None,
    instruction: str | None = None,
    scores: tuple[float, float, float] | None = None,
    feedback: tuple[str, str, str] | None = None,
    num_inference_steps: int = 30,
    seed: int = 42,
    scheduler: Literal[SCHEDULER_CHOICES] = AUTO_SCHEDULER,
    text_guidance_scale: float = 7.5,
    image_guidance_scale: float = 1.5,
    reward_guidance_scale: float = 1.0,
    resolution: int = 512,
    use_ema: bool = True,
) -> None:
    """Edit one image, a folder of images, or the samples of a set of shards with a trained model.

    The input is one of --image (with --out), --images DIR or --shards (with --out_dir: <name>.png per input).
    Each image is sampled with its own generator seeded with --seed, so a result does not depend on the order
    of a batch run.

    Example:

        mredit edit --model exports/ip2p --image cat.jpg --instruction 'make it a tiger' --out tiger.png \\
            --scores '[5, 5, 5]'

    Args:
        model: Export folder or Lightning .ckpt (InstructPix2Pix, or a module with an edit method: SmartEdit).
        image: One input image.
        images: A folder of input images (batch mode, with --out_dir).
        shards: Shard spec(s): edit each sample's source by its instruction (with --out_dir).
        out: Output image (with --image).
        out_dir: Output folder (batch modes): <name>.png per input.
        instruction: The edit instruction (with --shards: replaces each sample's own).
        scores: Following, preserving, quality in [0, 5], e.g. '[5, 5, 5]' (default: the best, 5 each).
        feedback: Failure text per perspective, e.g. '[none, blurry, none]' (default: "None" each).
        num_inference_steps: Sampling steps (30 in the paper).
        seed: Seed of each image's generator.
        scheduler: Sampler (auto: euler_a, or ddim for a model that predicts x0).
        text_guidance_scale: Instruction guidance scale.
        image_guidance_scale: Source image guidance scale.
        reward_guidance_scale: Reward guidance scale (needs a model trained with a null condition).
        resolution: Long side of the resized input, in pixels.
        use_ema: With a .ckpt: use the EMA weights (false: the raw ones).
    """
    if sum(source is not None for source in (image, images, shards)) != 1:
        raise ValueError("give exactly one of --image, --images DIR or --shards SPEC")
    if (image or images) and not instruction:
        raise ValueError("--instruction is required with --image/--images")
    if image and not out:
        raise ValueError("--out is required with --image")
    if not image and not out_dir:
        raise ValueError("--out_dir is required with --images/--shards")
    sampling = dict(
        scores=None if scores is None else check_scores(scores),
        feedback=None if feedback is None else list(feedback),
        num_inference_steps=num_inference_steps,
        text_guidance_scale=text_guidance_scale,
        image_guidance_scale=image_guidance_scale,
        reward_guidance_scale=reward_guidance_scale,
    )
    with open_editor(model, use_ema, scheduler, seed, resolution, **sampling) as edit_one:
        if image:
            result = edit_one(load_image(image), instruction)
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            result.save(out)
            print(f"wrote {out}")
            return
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        if images:
            written, skipped = _edit_folder(edit_one, Path(images), instruction, folder)
        else:
            written, skipped = _edit_shards(edit_one, shards, instruction, folder)
    print(f"wrote {written} images to {folder}" + (f", skipped {skipped} unreadable" if skipped else ""))


def _edit_folder(edit_one: Editor, folder: Path, instruction: str, out_dir: Path) -> tuple[int, int]:
    if not folder.is_dir():
        raise FileNotFoundError(f"--images: not a folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--images: no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    written = skipped = 0
    for file in files:
        try:
            image = load_image(file)
        except ValueError as e:
            log.warning("skipping %s", e)
            skipped += 1
            continue
        edit_one(image, instruction).save(out_dir / f"{file.stem}.png")
        written += 1
    return written, skipped


def _edit_shards(edit_one: Editor, shards: str | list[str], instruction: str | None, out_dir: Path) -> tuple[int, int]:
    counter = SkipCounter()
    written = 0
    for sample in read_samples(shards, counter):
        edit_one(sample.source, instruction or sample.instruction).save(out_dir / image_filename(sample.key))
        written += 1
    return written, counter.total


COMMANDS = edit
