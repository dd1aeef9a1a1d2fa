"""One opened editing model and the editing every front end shares (``mredit edit``, ``mredit serve``, Python).

``open_model(model)`` opens, once, an export folder (``mredit export`` / ``mredit import official``), a Lightning
``.ckpt`` of an ``InstructPix2PixModule`` (its EMA weights unless ``use_ema=False``) or of another mredit module
with an ``edit(images, instructions, ...)`` method (SmartEdit), and yields an ``EditingModel``:

    with open_model("reports/demo/runs/reward/final.ckpt") as model:
        edited = model.edit(load_image("cat.png"), "make it a tiger", EditOptions(scores=(5, 5, 5)))
        grid = model.sweep(load_image("cat.png"), "make it a tiger", x=("following", (0, 2.5, 5)),
                           y=("preserving", (0, 2.5, 5))).grid

Images are resized, whole, to the model's resolution (by default the one it was trained at; see
``mredit.pipelines.sizing``) and each edit gets its own generator seeded with ``EditOptions.seed``, so a result
depends on its inputs only. Sampling runs one request at a time (a lock), so one opened model can be shared by
threads (the ``mredit serve`` queue). Bad options fail with a ``ValueError`` naming the setting.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont

from mredit.models.ip2p import InstructPix2PixModule
from mredit.models.loading import load_module_from_checkpoint
from mredit.pipelines.reward_edit import AUTO_SCHEDULER, RewardEditPipeline
from mredit.pipelines.schedulers import SCHEDULER_CHOICES, SCHEDULERS, build_scheduler, resolve_scheduler_name
from mredit.pipelines.sizing import ResolutionChoice, choose_resolution, fit_image, fitted_size, size_multiple
from mredit.schema import BEST_SCORES, MAX_SCORE, PERSPECTIVE_TITLES, PERSPECTIVES

MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed's range
MAX_SWEEP_VALUES = 6  # per axis of a reward sweep: 36 edits at most


def check_scores(scores: Sequence[float], name: str = "scores") -> tuple[float, float, float]:
    """Three numbers in [0, 5] (following, preserving, quality), as floats."""
    try:
        values = tuple(float(v) for v in scores)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(0.0 <= v <= MAX_SCORE for v in values):
        raise ValueError(f"{name} must be three numbers in [0, 5] (following, preserving, quality), got {scores}")
    return values


@dataclass(frozen=True)
class EditOptions:
    """How to edit. ``scores``: following, preserving, quality in [0, 5] (None: the best, 5 each); ``feedback``:
    the failure text per perspective (None: "None" each, the training data's no-failure text); ``scheduler``:
    None keeps the one the model was opened with. Defaults follow the paper's evaluation (30 steps, text scale
    7.5, image scale 1.5). ``keep_size``: the edit is resized (LANCZOS) back to the input's size."""

    scores: tuple[float, float, float] | None = None
    feedback: tuple[str, str, str] | None = None
    num_inference_steps: int = 30
    seed: int = 42
    scheduler: str | None = None
    text_guidance_scale: float = 7.5
    image_guidance_scale: float = 1.5
    reward_guidance_scale: float = 1.0
    keep_size: bool = False


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _integer(value: Any, name: str, low: int, high: int) -> int:
    number = _number(value, name)
    if number != int(number) or not low <= number <= high:
        raise ValueError(f"{name} must be a whole number in [{low}, {high}], got {value!r}")
    return int(number)


def check_options(options: EditOptions) -> EditOptions:
    """``options`` with numbers as their types, or a ``ValueError`` naming the first bad setting."""
    scores = None if options.scores is None else check_scores(options.scores)
    feedback = options.feedback
    if feedback is not None:
        if isinstance(feedback, str) or len(feedback) != 3 or not all(isinstance(text, str) for text in feedback):
            raise ValueError(f"feedback must be three texts (following, preserving, quality), got {feedback!r}")
        feedback = tuple(feedback)
    if options.scheduler is not None and options.scheduler not in SCHEDULER_CHOICES:
        raise ValueError(f"unknown scheduler {options.scheduler!r}: choose one of {', '.join(SCHEDULER_CHOICES)}")
    scales = {}
    for name in ("text_guidance_scale", "image_guidance_scale", "reward_guidance_scale"):
        scales[name] = _number(getattr(options, name), name)
        if scales[name] < 0:
            raise ValueError(f"{name} must be >= 0, got {scales[name]}")
    return replace(
        options,
        scores=scores,
        feedback=feedback,
        num_inference_steps=_integer(options.num_inference_steps, "num_inference_steps", 1, 10_000),
        seed=_integer(options.seed, "seed", 0, MAX_SEED),
        keep_size=bool(options.keep_size),
        **scales,
    )


@dataclass
class Sweep:
    """A reward sweep: ``edits[(x, y)]`` is the edit at score x of ``x_perspective`` and y of ``y_perspective``
    (the third perspective at ``fixed``); ``grid`` shows them all, labelled, one row per y value."""

    x_perspective: str
    x_values: tuple[float, ...]
    y_perspective: str
    y_values: tuple[float, ...]
    fixed: tuple[str, float]
    edits: dict[tuple[float, float], Image.Image] = field(default_factory=dict)
    grid: Image.Image | None = None


@dataclass
class EditingModel:
    """An opened model: ``edit`` and ``sweep`` images with it. Build it with ``open_model``.

    ``pipe``: the ``RewardEditPipeline`` of an export or an InstructPix2Pix checkpoint; ``module``: a module with
    its own ``edit`` (SmartEdit), when ``pipe`` is None. ``resolution``: the long side inputs are resized to and
    what ``choose_resolution`` said about it. ``description``: one line naming what was opened. ``num_threads``:
    torch's intra-op threads while sampling (None: leave torch's setting).
    """

    name: str
    description: str
    resolution: ResolutionChoice
    default_scheduler: str
    pipe: RewardEditPipeline | None = field(default=None, repr=False)
    module: Any = field(default=None, repr=False)
    num_threads: int | None = None
    _scheduler_config: dict = field(default_factory=dict, repr=False)
    _schedulers: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- what the model can do --------------------------------------------------------------------------------
    @property
    def conditioner(self):
        """The reward conditioner (None: a model without the reward condition, such as a baseline)."""
        return self.pipe.conditioner if self.pipe is not None else getattr(self.module, "reward_conditioner", None)

    @property
    def has_rewards(self) -> bool:
        """Whether scores and failure texts change the edit (the model has a reward conditioner)."""
        return self.conditioner is not None

    @property
    def reward_guidance(self) -> bool:
        """Whether reward guidance (``reward_guidance_scale`` != 1) is possible: a pipeline model whose conditioner
        learned a null condition (trained with reward dropout)."""
        return self.pipe is not None and self.has_rewards and bool(self.conditioner.config.get("null_condition"))

    @property
    def trained_resolution(self) -> int | None:
        """The resolution the model was trained at, as it records it (None: not recorded)."""
        if self.pipe is not None:
            return self.pipe.trained_resolution
        return getattr(self.module, "trained_resolution", None)

    @property
    def size_multiple(self) -> int:
        """Edited sides are multiples of this (the VAE's and the UNet's downsampling)."""
        if self.pipe is not None:
            return self.pipe.size_multiple
        vae_factor = 2 ** (len(self.module.vae.config.block_out_channels) - 1)
        return size_multiple(vae_factor, len(self.module.unet.config.down_block_types))

    @property
    def schedulers(self) -> tuple[str, ...]:
        """The scheduler names this model can sample with (``auto`` first)."""
        sample = self._scheduler_config.get("prediction_type") == "sample"  # x0: Euler ancestral cannot sample it
        return (AUTO_SCHEDULER, *(name for name in SCHEDULERS if not (sample and name == "euler_a")))

    @property
    def torch_modules(self) -> list[torch.nn.Module]:
        """The modules that sample (the pipeline's components, or the module): what a Lightning job moves to its
        device (``mredit.editing.shard_editing``)."""
        if self.pipe is None:
            return [self.module]
        return [part for part in self.pipe.components.values() if isinstance(part, torch.nn.Module)]

    def fitted_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size an input of ``size`` (width, height) is edited at."""
        return fitted_size(*size, resolution=self.resolution.resolution, multiple=self.size_multiple)

    def __post_init__(self) -> None:
        if self.pipe is not None:  # the scheduler the pipeline was built with is the default one
            name = resolve_scheduler_name(self.default_scheduler, self._scheduler_config)
            self._schedulers[name] = self.pipe.scheduler

    # --- editing ----------------------------------------------------------------------------------------------
    def edit(
        self, image: Image.Image, instruction: str, options: EditOptions | None = None, progress: bool = False
    ) -> Image.Image:
        """``image`` edited by ``instruction``: resized, whole, to ``self.resolution`` (aspect ratio kept up to
        the size multiple), sampled with its own generator seeded with ``options.seed``. ``progress``: a bar over
        the denoising steps (stderr; ``mredit serve`` shows it on the page)."""
        options = check_options(options or EditOptions())
        if not isinstance(instruction, str):
            raise ValueError(f"the instruction must be a text, got {type(instruction).__name__}")
        if options.reward_guidance_scale != 1.0 and not self.reward_guidance:
            raise ValueError(
                "reward guidance (reward_guidance_scale != 1) needs an InstructPix2Pix model whose reward conditioner "
                "learned a null condition (trained with reward dropout); this one did not"
            )
        with self._lock:
            if self.num_threads:  # per call: OpenMP's thread count is a setting of the calling thread
                torch.set_num_threads(self.num_threads)
            edited = self._edit_pipe(image, instruction, options, progress) if self.pipe is not None else None
            if edited is None:
                edited = self._edit_module(image, instruction, options, progress)
        if options.keep_size and edited.size != image.size:
            edited = edited.resize(image.size, Image.Resampling.LANCZOS)
        return edited

    def _scheduler(self, name: str | None):
        name = resolve_scheduler_name(name or self.default_scheduler, self._scheduler_config)
        if name not in self._schedulers:
            self._schedulers[name] = build_scheduler(name, self._scheduler_config)  # x0 + euler_a: a clear error
        return self._schedulers[name]

    def _edit_pipe(self, image: Image.Image, instruction: str, options: EditOptions, progress: bool) -> Image.Image:
        pipe = self.pipe
        pipe.scheduler = self._scheduler(options.scheduler)
        pipe.set_progress_bar_config(disable=not progress, desc="denoising", unit="step")
        fitted = fit_image(image, resolution=self.resolution.resolution, multiple=pipe.size_multiple)
        generator = torch.Generator(device=pipe.device).manual_seed(options.seed)
        return pipe(
            fitted,
            instruction,
            scores=options.scores,
            feedback=None if options.feedback is None else list(options.feedback),
            num_inference_steps=options.num_inference_steps,
            text_guidance_scale=options.text_guidance_scale,
            image_guidance_scale=options.image_guidance_scale,
            reward_guidance_scale=options.reward_guidance_scale,
            generator=generator,
        )[0]

    def _edit_module(self, image: Image.Image, instruction: str, options: EditOptions, progress: bool) -> Image.Image:
        # the module fits the image itself, to the same resolution
        return self.module.edit(
            [image],
            [instruction],
            scores=None if options.scores is None else list(options.scores),
            feedback=None if options.feedback is None else list(options.feedback),
            num_inference_steps=options.num_inference_steps,
            text_guidance_scale=options.text_guidance_scale,
            image_guidance_scale=options.image_guidance_scale,
            seed=options.seed,
            scheduler=resolve_scheduler_name(options.scheduler or self.default_scheduler, self._scheduler_config),
            resolution=self.resolution.resolution,
            progress=progress,
        )[0]

    def sweep(
        self,
        image: Image.Image,
        instruction: str,
        options: EditOptions | None = None,
        x: tuple[str, Sequence[float]] = ("following", (0.0, 2.5, 5.0)),
        y: tuple[str, Sequence[float]] = ("preserving", (0.0, 2.5, 5.0)),
        progress: bool = False,
        on_cell: Any = None,
    ) -> Sweep:
        """The same edit (same seed) at every pair of scores of two perspectives, ``x`` (columns) and ``y``
        (rows), each ``(perspective, values)``; the third perspective keeps its score in ``options.scores``
        (default 5). ``on_cell(done, total)`` is called after each edit. Needs a model with a reward conditioner.
        """
        if not self.has_rewards:
            raise ValueError("this model has no reward conditioner: its edits do not depend on the rewards")
        options = check_options(options or EditOptions())
        (x_name, x_values), (y_name, y_values) = _sweep_axis(x, "x"), _sweep_axis(y, "y")
        if x_name == y_name:
            raise ValueError(f"choose two different perspectives to sweep, got {x_name} twice")
        scores = dict(zip(PERSPECTIVES, options.scores or BEST_SCORES))
        (fixed_name,) = (p for p in PERSPECTIVES if p not in (x_name, y_name))
        result = Sweep(x_name, x_values, y_name, y_values, (fixed_name, scores[fixed_name]))
        total, done = len(x_values) * len(y_values), 0
        for y_value in y_values:
            for x_value in x_values:
                scores.update({x_name: x_value, y_name: y_value})
                cell_options = replace(options, scores=tuple(scores[p] for p in PERSPECTIVES))
                result.edits[(x_value, y_value)] = self.edit(image, instruction, cell_options, progress)
                done += 1
                if on_cell is not None:
                    on_cell(done, total)
        result.grid = sweep_grid(result)
        return result


def _sweep_axis(axis: tuple[str, Sequence[float]], name: str) -> tuple[str, tuple[float, ...]]:
    perspective, values = axis
    if perspective not in PERSPECTIVES:
        raise ValueError(f"{name}: unknown perspective {perspective!r}: choose one of {', '.join(PERSPECTIVES)}")
    numbers = tuple(_number(v, f"{name} scores") for v in values)
    if not 1 <= len(numbers) <= MAX_SWEEP_VALUES:
        raise ValueError(f"{name}: give 1 to {MAX_SWEEP_VALUES} scores, got {len(numbers)}")
    if not all(0.0 <= v <= MAX_SCORE for v in numbers):
        raise ValueError(f"{name}: scores must be in [0, 5], got {', '.join(f'{v:g}' for v in numbers)}")
    return perspective, numbers


def sweep_grid(sweep: Sweep, cell: int = 128) -> Image.Image:
    """The sweep's edits in one labelled image: one column per x score, one row per y score, each edit scaled
    (nearest neighbour, whole factor) to at least ``cell`` pixels on its long side."""
    first = next(iter(sweep.edits.values()))
    factor = max(1, math.ceil(cell / max(first.size)))
    width, height = first.width * factor, first.height * factor
    font = ImageFont.load_default()
    x_title, y_title = PERSPECTIVE_TITLES[sweep.x_perspective], PERSPECTIVE_TITLES[sweep.y_perspective]
    left, top, gap = 150, 44, 4
    columns, rows = len(sweep.x_values), len(sweep.y_values)
    grid_width = max(left + columns * (width + gap), 560)
    grid = Image.new("RGB", (grid_width, top + rows * (height + gap) + 22), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((left, 4), f"columns: {x_title} score", fill="black", font=font)
    for column, x_value in enumerate(sweep.x_values):
        draw.text((left + column * (width + gap) + width // 2 - 8, 24), f"{x_value:g}", fill="black", font=font)
    for row, y_value in enumerate(sweep.y_values):
        y0 = top + row * (height + gap)
        draw.text((4, y0 + height // 2 - 6), f"{y_title} {y_value:g}", fill="black", font=font)
        for column, x_value in enumerate(sweep.x_values):
            edit = sweep.edits[(x_value, y_value)].resize((width, height), Image.Resampling.NEAREST)
            grid.paste(edit, (left + column * (width + gap), y0))
    fixed_name, fixed_value = sweep.fixed
    footer = f"rows: {y_title} score; {PERSPECTIVE_TITLES[fixed_name]} score {fixed_value:g} in every edit"
    draw.text((4, grid.height - 18), footer, fill="black", font=font)
    return grid


def _describe(kind: str, model: str, conditioner, resolution: ResolutionChoice, trained: int | None) -> str:
    if conditioner is None:
        rewards = "no reward conditioner (a baseline)"
    else:
        null = ", learned null condition" if conditioner.config.get("null_condition") else ""
        rewards = f"{type(conditioner).__name__}{null}"
    trained_text = f"trained at {trained} px" if trained is not None else "training resolution not recorded"
    return f"{model}: {kind}; {rewards}; {trained_text}, edits at {resolution.resolution} px"


def wrap(
    model: Any,
    name: str = "model",
    kind: str | None = None,
    scheduler: str = AUTO_SCHEDULER,
    resolution: int | None = None,
    scheduler_config: dict | None = None,
    num_threads: int | None = None,
) -> EditingModel:
    """An ``EditingModel`` around a model already in memory: a ``RewardEditPipeline`` (its scheduler replaced by
    ``scheduler``) or a module with ``edit(images, instructions, ...)`` (SmartEdit; an InstructPix2Pix module:
    wrap ``RewardEditPipeline.from_module(module)`` inside ``module.ema_weights()``). ``scheduler_config``: the
    training scheduler's (default: the current scheduler's). ``name`` and ``kind`` go into its description."""
    if scheduler not in SCHEDULER_CHOICES:
        raise ValueError(f"unknown scheduler {scheduler!r}: choose one of {', '.join(SCHEDULER_CHOICES)}")
    if isinstance(model, RewardEditPipeline):
        config = dict(scheduler_config or model.scheduler.config)
        model.scheduler = build_scheduler(scheduler, config)
        trained, conditioner, pipe, module = model.trained_resolution, model.conditioner, model, None
    elif hasattr(model, "edit"):
        config = dict(scheduler_config or model.noise_scheduler.config)
        build_scheduler(scheduler, config)  # an x0 model with euler_a fails here, before any image
        trained, conditioner = getattr(model, "trained_resolution", None), getattr(model, "reward_conditioner", None)
        pipe, module = None, model
    else:
        raise ValueError(f"{type(model).__name__} has no edit(images, instructions, ...) method")
    choice = choose_resolution(resolution, trained, name)
    described = _describe(kind or type(model).__name__, name, conditioner, choice, trained)
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    return EditingModel(
        name, described, choice, scheduler, pipe, module, num_threads=num_threads, _scheduler_config=config
    )


@contextmanager
def open_model(
    model: str | Path,
    use_ema: bool = True,
    scheduler: str = AUTO_SCHEDULER,
    resolution: int | None = None,
    num_threads: int | None = None,
) -> Iterator[EditingModel]:
    """Open ``model`` (an export folder or a Lightning ``.ckpt``) for editing, once.

    ``use_ema``: with an InstructPix2Pix checkpoint, its EMA weights are swapped in for as long as the block
    lasts. ``scheduler``: the default inference scheduler (``auto``: Euler ancestral, DDIM for a model that
    predicts x0). ``resolution`` None: the resolution the model was trained at (``choose_resolution``: the
    ``EditingModel.resolution`` carries its note when the model does not record it, and its warning when a given
    one is far above it; the caller shows them). ``num_threads``: torch's intra-op threads while sampling (None:
    torch's setting; tiny models sample fastest on one, in a server's worker threads above all).
    """
    model = str(model)
    path = Path(model)
    if scheduler not in SCHEDULER_CHOICES:
        raise ValueError(f"unknown scheduler {scheduler!r}: choose one of {', '.join(SCHEDULER_CHOICES)}")
    if path.is_dir():
        saved = path / "scheduler" / "scheduler_config.json"  # the training scheduler's config
        config = json.loads(saved.read_text()) if saved.is_file() else None
        pipe = RewardEditPipeline.from_pretrained(path, scheduler=scheduler)
        yield wrap(pipe, model, "export folder", scheduler, resolution, config, num_threads)
        return
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {model} (expected an export folder or a .ckpt file)")
    module = load_module_from_checkpoint(path)
    if isinstance(module, InstructPix2PixModule):
        with module.ema_weights() if use_ema else nullcontext():
            pipe = RewardEditPipeline.from_module(module, scheduler=scheduler)
            weights = "EMA weights" if use_ema and getattr(module, "ema", None) is not None else "raw weights"
            config = dict(module.noise_scheduler.config)
            kind = f"InstructPix2Pix checkpoint, {weights}"
            yield wrap(pipe, model, kind, scheduler, resolution, config, num_threads)
        return
    if hasattr(module, "edit") and not use_ema:
        raise ValueError(f"{type(module).__name__}: use_ema false applies to InstructPix2Pix models only")
    yield wrap(module, model, f"{type(module).__name__} checkpoint", scheduler, resolution, num_threads=num_threads)
