"""``mredit edit``: edit one image, a folder of images, or the samples of a set of shards.

The model is an export folder (``mredit export`` / ``mredit import official``) or a Lightning ``.ckpt`` of an
``InstructPix2PixModule`` (its EMA weights unless ``--use_ema false``) or of another mredit module with an
``edit`` method (SmartEdit). Each image gets its own generator seeded with ``--seed``, so a result does not
depend on the order of a batch run. Inputs are resized to the resolution the model was trained at unless
``--resolution`` says otherwise; progress bars go to stderr unless ``--quiet true``. ``--shards`` runs as
Lightning ``predict`` (``mredit.editing.shard_editing``), on several devices and nodes with ``--devices`` and
``--num_nodes``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from mredit.editing.service import EditingModel, EditOptions, check_options, check_scores, open_model
from mredit.editing.shard_editing import edit_shards, images_bar
from mredit.pipelines.reward_edit import AUTO_SCHEDULER, SCHEDULER_CHOICES
from mredit.pipelines.sizing import ResolutionChoice, load_image

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@contextmanager
def open_editor(
    model: str, use_ema: bool, scheduler: str, seed: int, resolution: int | None, keep_size: bool, **sampling: Any
) -> Iterator[tuple[EditingModel, EditOptions]]:
    """``model`` opened by ``mredit.editing.open_model``, with the checked options (``sampling``: ``scores``,
    ``feedback``, ``num_inference_steps`` and the three guidance scales) and the resolution's note or warning on
    stderr, once."""
    with open_model(model, use_ema=use_ema, scheduler=scheduler, resolution=resolution) as opened:
        _say(opened.resolution)
        options = check_options(EditOptions(**sampling, seed=seed, keep_size=keep_size))
        if options.reward_guidance_scale != 1.0 and opened.pipe is None:
            raise ValueError(f"{model}: --reward_guidance_scale applies to InstructPix2Pix models only")
        yield opened, options


def _say(choice: ResolutionChoice) -> None:
    """The resolution's note (the model records none: the fallback) or warning (far above the trained one)."""
    if choice.note:
        print(f"mredit edit: note: {choice.note}", file=sys.stderr)
    if choice.warning:
        print(f"mredit edit: warning: {choice.warning}", file=sys.stderr)


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
    resolution: int | None = None,
    keep_size: bool = False,
    use_ema: bool = True,
    quiet: bool = False,
    accelerator: str = "auto",
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
) -> None:
    """Edit one image, a folder of images, or the samples of a set of shards with a trained model.

    The input is one of --image (with --out), --images DIR or --shards (with --out_dir: <name>.png per input).
    Inputs are resized, whole, to the resolution the model was trained at (recorded in its checkpoint or export;
    512 for a model that does not record it), keeping their aspect ratio up to the model's size multiple. Each
    image is sampled with its own generator seeded with --seed, so a result does not depend on the order of a
    batch run. Progress bars (denoising steps for one image, images for a folder or shards) go to stderr.

    --shards runs as Lightning predict: --devices N starts N processes (each editing the samples of its own
    shards, shards rank::N), and under torchrun or SLURM (srun) --devices and --num_nodes say how the processes
    were started (docs/distributed.md).

    Examples:

        mredit edit --model exports/ip2p --image cat.jpg --instruction 'make it a tiger' --out tiger.png \\
            --scores '[5, 5, 5]'
        mredit edit --model exports/ip2p --shards data/realedit --out_dir edits/realedit --devices 8

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
        resolution: Long side of the resized input, in pixels (default: the resolution the model was trained at;
            more than 2x that warns).
        keep_size: Resize each edit back to its input's size.
        use_ema: With a .ckpt: use the EMA weights (false: the raw ones).
        quiet: No progress bars.
        accelerator: With --shards: cpu, gpu, ... (Lightning's; auto: a GPU when there is one).
        devices: With --shards: processes (devices) per node.
        num_nodes: With --shards: nodes (torchrun or SLURM starts the processes of each).
        strategy: With --shards: Lightning's strategy (auto: ddp when there are several processes).
    """
    if sum(source is not None for source in (image, images, shards)) != 1:
        raise ValueError("give exactly one of --image, --images DIR or --shards SPEC")
    if (image or images) and not instruction:
        raise ValueError("--instruction is required with --image/--images")
    if image and not out:
        raise ValueError("--out is required with --image")
    if not image and not out_dir:
        raise ValueError("--out_dir is required with --images/--shards")
    if resolution is not None and resolution < 1:
        raise ValueError(f"--resolution must be >= 1, got {resolution}")
    if not shards and (devices, num_nodes) != (1, 1):
        raise ValueError("--devices and --num_nodes apply to --shards only")
    sampling = dict(
        scores=None if scores is None else check_scores(scores, "--scores"),
        feedback=None if feedback is None else list(feedback),
        num_inference_steps=num_inference_steps,
        text_guidance_scale=text_guidance_scale,
        image_guidance_scale=image_guidance_scale,
        reward_guidance_scale=reward_guidance_scale,
    )
    with open_editor(model, use_ema, scheduler, seed, resolution, keep_size, **sampling) as (opened, options):
        if image:
            result = opened.edit(load_image(image), instruction, options, progress=not quiet)
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            result.save(out)
            print(f"wrote {out}")
            return
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        if images:
            written, skipped = _edit_folder(opened, options, Path(images), instruction, folder, quiet)
            print(f"wrote {written} images to {folder}" + (f", skipped {skipped} unreadable" if skipped else ""))
            return
        processes = dict(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy)
        reports = edit_shards(opened, options, shards, folder, instruction, quiet, **processes)
    if reports is not None:  # global rank 0 speaks for all ranks
        print(_shards_summary(reports, folder))


def _shards_summary(reports: list[dict[str, Any]], folder: Path) -> str:
    written = sum(report["written"] for report in reports)
    skipped = sum(sum(report["skipped"].values()) for report in reports)
    line = f"wrote {written} images to {folder}" + (f", skipped {skipped} unreadable" if skipped else "")
    if len(reports) > 1:
        line += f" ({len(reports)} processes: " + " + ".join(str(report["written"]) for report in reports) + ")"
    return line


def _edit_folder(
    opened: EditingModel, options: EditOptions, folder: Path, instruction: str, out_dir: Path, quiet: bool
) -> tuple[int, int]:
    if not folder.is_dir():
        raise FileNotFoundError(f"--images: not a folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--images: no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    written = skipped = 0
    with images_bar(len(files), quiet) as bar:
        for file in files:
            bar.update()
            try:
                image = load_image(file)
            except ValueError as e:
                log.warning("skipping %s", e)
                skipped += 1
                continue
            opened.edit(image, instruction, options).save(out_dir / f"{file.stem}.png")
            written += 1
    return written, skipped


COMMANDS = edit
