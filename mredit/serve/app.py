"""The ``mredit serve`` page: a gradio Blocks app over one opened model (and optionally a baseline beside it).

``EditorApp(model, baseline)`` holds models opened with ``mredit.editing.open_model`` and has the page's functions,
which are also its API endpoints (``/edit``, ``/sweep``, ``/info``; see docs/serve.md) and plain Python methods:

- ``edit``: the edit of an image at the chosen rewards (and the baseline's edit of the same input and seed);
- ``sweep``: the same edit over a grid of two perspectives' scores, as one labelled image;
- ``info``: what was opened and the accepted ranges.

Every value is checked here, whatever sent it (the page, the API or Python): a bad one raises ``gr.Error`` with a
one-line message, which the page shows and the client API raises. Uploaded files are read only from gradio's
upload folder (gradio refuses API inputs that name any other server path). Requests wait in gradio's queue and
sample one at a time: the models are loaded once, when the server starts.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home, before gradio is imported

import gradio as gr  # noqa: E402
from gradio import utils as gradio_utils  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402

from mredit.editing.service import EditingModel, EditOptions  # noqa: E402
from mredit.pipelines.sizing import to_rgb  # noqa: E402
from mredit.schema import NO_FAILURE, PERSPECTIVE_TITLES, PERSPECTIVES  # noqa: E402
from mredit.serve.examples import Example  # noqa: E402

MAX_SEED = 2**32 - 1
MAX_TEXT = 500  # characters of an instruction or a failure text
# the ranges the page's controls have, checked again for every request (the API can send anything)
GUIDANCE_RANGES = {"text_guidance_scale": (0.0, 20.0), "image_guidance_scale": (0.0, 10.0)}
REWARD_GUIDANCE_RANGE = (0.0, 10.0)
SWEEP_DEFAULT = "0, 2.5, 5"
QUEUE_ID = "model"  # every sampling event shares one queue slot: one request samples at a time
# tiny models edit tiny images: show their pixels, not a blur
PAGE_CSS = (
    "#input-image img, #edit-output img, #baseline-output img {width: 100%; height: 100%; object-fit: contain;}"
    " #input-image img, #edit-output img, #baseline-output img, #sweep-output img {image-rendering: pixelated;}"
)
THEME_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web fonts: the page works offline


@dataclass(frozen=True)
class Defaults:
    """The page's starting values (the paper's evaluation, at the best rewards)."""

    seed: int = 42
    num_inference_steps: int = 30
    text_guidance_scale: float = 7.5
    image_guidance_scale: float = 1.5
    reward_guidance_scale: float = 1.0
    score: float = 5.0


def _fail(message: str) -> gr.Error:
    return gr.Error(message, title="cannot edit", print_exception=False)


def _plain(number: float) -> str:
    return str(int(number)) if math.isfinite(number) and number == int(number) else f"{number:g}"


def _number(value: Any, name: str, low: float, high: float) -> float:
    bounds = f"[{_plain(low)}, {_plain(high)}]"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(f"{name} must be a number in {bounds}, got {value!r}") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise _fail(f"{name} must be a number in {bounds}, got {value!r}")
    return number


def _whole(value: Any, name: str, low: int, high: int) -> int:
    number = _number(value, name, low, high)
    if number != int(number):
        raise _fail(f"{name} must be a whole number in [{_plain(low)}, {_plain(high)}], got {value!r}")
    return int(number)


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _fail(f"{name} must be a text, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise _fail(f"{name} is {len(value)} characters long; at most {MAX_TEXT}")
    return value.strip()


def _checked(component: gr.components.Component) -> gr.components.Component:
    """``component`` (a gradio input) whose bad API values fail with a message naming it: numbers must be numbers
    within its range, choices among its choices, an image a readable image. Its ``preprocess`` is wrapped on the
    instance: subclassing a gradio component makes gradio write a ``.pyi`` stub beside this module."""
    original = component.preprocess
    name = component.label or "a value"

    def preprocess(payload):
        if isinstance(component, gr.Slider | gr.Number) and payload is not None:
            low = -math.inf if component.minimum is None else component.minimum
            high = math.inf if component.maximum is None else component.maximum
            _number(payload, name, low, high)
        try:
            return original(payload)
        except gr.Error as e:
            raise _fail(f"{name}: {e.message}") from None
        except Image.DecompressionBombError as e:
            raise _fail(f"the image has too many pixels to open safely ({e})") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            if not isinstance(component, gr.Image):
                raise
            raise _fail(_unreadable(getattr(payload, "orig_name", None), e)) from None

    component.preprocess = preprocess
    return component


def _unreadable(name: str | None, error: Exception) -> str:
    """One line on a file that is not a readable image, naming it as the visitor did (never a server path)."""
    why = "not an image file" if isinstance(error, UnidentifiedImageError) else "the file is truncated or corrupt"
    return f"cannot read {name or 'the file'} as an image (PNG, JPEG, WebP, BMP, TIFF...): {why}"


def read_image(image: Any) -> Image.Image:
    """The input as 8-bit RGB: a PIL image (Python callers) or the path gradio's upload handling produced."""
    if image is None or image == "":
        raise _fail("no image: upload one (PNG, JPEG, WebP...) or pick an example")
    if isinstance(image, Image.Image):
        return to_rgb(image)
    path = Path(str(image))
    if not gradio_utils.is_in_or_equal(path, gradio_utils.get_upload_folder()):
        raise _fail("the image must be uploaded: server paths are not read")  # gradio refuses them before this
    try:
        with Image.open(path) as opened:
            opened.load()
            return to_rgb(opened)
    except Image.DecompressionBombError as e:
        raise _fail(f"the image has too many pixels to open safely ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise _fail(_unreadable(path.name, e)) from None


class EditorApp:
    """The page's functions over ``model`` (and ``baseline``, edited beside it with the same input and seed).

    ``examples``: the gallery under the input; ``max_inference_steps``: the largest step count a request may ask
    for (sampling time grows with it; every request waits for the ones before it).
    """

    def __init__(
        self,
        model: EditingModel,
        baseline: EditingModel | None = None,
        examples: list[Example] | None = None,
        max_inference_steps: int = 100,
        defaults: Defaults | None = None,
    ) -> None:
        if max_inference_steps < 1:
            raise ValueError(f"--max_inference_steps must be >= 1, got {max_inference_steps}")
        self.model, self.baseline = model, baseline
        self.examples = list(examples or [])
        self.max_inference_steps = max_inference_steps
        self.defaults = defaults or Defaults(num_inference_steps=min(30, max_inference_steps))
        self._requests = itertools.count(1)  # numbers the notes, so that each answer reads differently

    # --- the checks every request goes through ----------------------------------------------------------------
    def _options(
        self,
        following: Any,
        preserving: Any,
        quality: Any,
        following_failure: Any,
        preserving_failure: Any,
        quality_failure: Any,
        seed: Any,
        num_inference_steps: Any,
        scheduler: Any,
        text_guidance_scale: Any,
        image_guidance_scale: Any,
        reward_guidance_scale: Any,
        keep_size: Any = False,
    ) -> EditOptions:
        scores = tuple(
            _number(value, f"the {PERSPECTIVE_TITLES[name]} score", 0, 5)
            for name, value in zip(PERSPECTIVES, (following, preserving, quality))
        )
        failures = tuple(
            _text(value, f"the {PERSPECTIVE_TITLES[name]} failure text") or NO_FAILURE
            for name, value in zip(PERSPECTIVES, (following_failure, preserving_failure, quality_failure))
        )
        if scheduler not in self.model.schedulers:
            raise _fail(
                f"scheduler must be one of {', '.join(self.model.schedulers)} for this model, got {scheduler!r}"
            )
        scales = {
            name: _number(value, name, *GUIDANCE_RANGES[name])
            for name, value in (
                ("text_guidance_scale", text_guidance_scale),
                ("image_guidance_scale", image_guidance_scale),
            )
        }
        reward_scale = _number(reward_guidance_scale, "reward_guidance_scale", *REWARD_GUIDANCE_RANGE)
        if reward_scale != 1.0 and not self.model.reward_guidance:
            raise _fail(
                "reward guidance needs a model whose reward conditioner learned a null condition (trained with "
                "reward dropout); this one did not: leave reward_guidance_scale at 1"
            )
        if not isinstance(keep_size, bool | None):
            raise _fail(f"keep_size must be true or false, got {keep_size!r}")
        rewards_on = self.model.has_rewards  # a model without rewards is not asked for any (it would warn)
        return EditOptions(
            scores=scores if rewards_on else None,
            feedback=failures if rewards_on else None,
            num_inference_steps=_whole(num_inference_steps, "num_inference_steps", 1, self.max_inference_steps),
            seed=_whole(seed, "seed", 0, MAX_SEED),
            scheduler=scheduler,
            reward_guidance_scale=reward_scale,
            keep_size=bool(keep_size),
            **scales,
        )

    def _inputs(self, image: Any, instruction: Any) -> tuple[Image.Image, str]:
        instruction = _text(instruction, "the instruction")
        picture = read_image(image)
        if not instruction:
            raise _fail("the instruction is empty: say what to change, e.g. 'make the square red'")
        return picture, instruction

    def _size_note(self, image: Image.Image, keep_size: bool) -> str:
        fitted = self.model.fitted_size(image.size)
        side = self.model.resolution.resolution
        trained = self.model.trained_resolution
        if trained == side:
            why = "its training resolution"
        elif self.model.resolution.note:
            why = "the fallback: the model records no training resolution"
        else:
            why = "set by --resolution"
        note = f"input {image.width}x{image.height}"
        if fitted != image.size:
            note += f", resized to {fitted[0]}x{fitted[1]} (the model edits at {side} px, {why})"
        if keep_size and fitted != image.size:
            note += f"; the edit was resized back to {image.width}x{image.height}"
        return note

    def _run(self, model: EditingModel, image: Image.Image, instruction: str, options: EditOptions) -> Image.Image:
        try:
            return model.edit(image, instruction, options)
        except ValueError as e:  # the service's one-line messages (e.g. a scheduler the model cannot sample)
            raise _fail(str(e)) from None

    # --- the endpoints ----------------------------------------------------------------------------------------
    def edit(
        self,
        image: Any,
        instruction: str,
        following: float = 5.0,
        preserving: float = 5.0,
        quality: float = 5.0,
        following_failure: str = "",
        preserving_failure: str = "",
        quality_failure: str = "",
        seed: int = 42,
        num_inference_steps: int = 30,
        scheduler: str = "auto",
        text_guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
        reward_guidance_scale: float = 1.0,
        keep_size: bool = False,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 (gradio's marker for a progress bar)
    ) -> tuple[Image.Image, Image.Image | None, str]:
        """Edit an image by an instruction at the given rewards (0-5 each; failure texts: "" for none).

        Returns the edit, the baseline's edit of the same input and seed (None without a baseline) and a
        one-line note (sizes, time).
        """
        picture, instruction = self._inputs(image, instruction)
        options = self._options(
            following,
            preserving,
            quality,
            following_failure,
            preserving_failure,
            quality_failure,
            seed,
            num_inference_steps,
            scheduler,
            text_guidance_scale,
            image_guidance_scale,
            reward_guidance_scale,
            keep_size,
        )
        start = time.perf_counter()
        progress(0, desc="editing")
        edited = self._run(self.model, picture, instruction, options)
        seconds = time.perf_counter() - start
        baseline_edit, baseline_note = None, ""
        if self.baseline is not None:
            progress(0, desc="baseline")
            start = time.perf_counter()
            baseline_edit = self._run(self.baseline, picture, instruction, _baseline_options(options))
            baseline_note = f"; baseline {time.perf_counter() - start:.1f} s"
        rewards = "no reward conditioner: rewards ignored"
        if options.scores is not None:
            rewards = ", ".join(f"{name} {score:g}" for name, score in zip(PERSPECTIVES, options.scores))
        note = (
            f"Edit {next(self._requests)}: {self._size_note(picture, options.keep_size)}. Rewards: {rewards}. "
            f"Seed {options.seed}, {options.num_inference_steps} steps: {seconds:.1f} s{baseline_note}."
        )
        return edited, baseline_edit, note

    def sweep(
        self,
        image: Any,
        instruction: str,
        x_perspective: str = "following",
        x_scores: str = SWEEP_DEFAULT,
        y_perspective: str = "preserving",
        y_scores: str = SWEEP_DEFAULT,
        following: float = 5.0,
        preserving: float = 5.0,
        quality: float = 5.0,
        following_failure: str = "",
        preserving_failure: str = "",
        quality_failure: str = "",
        seed: int = 42,
        num_inference_steps: int = 30,
        scheduler: str = "auto",
        text_guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
        reward_guidance_scale: float = 1.0,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> tuple[Image.Image, str]:
        """The same edit (same seed) at every pair of scores of two perspectives (x: columns, y: rows; scores as
        comma-separated numbers in [0, 5], at most 6 per axis); the third perspective keeps its score.

        Returns the labelled grid and a one-line note.
        """
        if not self.model.has_rewards:
            raise _fail("this model has no reward conditioner: its edits do not depend on the rewards")
        picture, instruction = self._inputs(image, instruction)
        options = self._options(
            following,
            preserving,
            quality,
            following_failure,
            preserving_failure,
            quality_failure,
            seed,
            num_inference_steps,
            scheduler,
            text_guidance_scale,
            image_guidance_scale,
            reward_guidance_scale,
        )
        axes = []
        for axis, perspective, scores in (("x", x_perspective, x_scores), ("y", y_perspective, y_scores)):
            if perspective not in PERSPECTIVES:
                raise _fail(f"{axis}: choose a perspective among {', '.join(PERSPECTIVES)}, got {perspective!r}")
            text = _text(scores, f"the {axis} scores")
            values = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
            axes.append((perspective, tuple(_number(v, f"{axis} score", 0, 5) for v in values)))
        start = time.perf_counter()
        progress(0, desc="sweep")

        def cell_done(done: int, total: int) -> None:
            progress(done / total, desc=f"edit {done}/{total}")

        try:
            result = self.model.sweep(picture, instruction, options, x=axes[0], y=axes[1], on_cell=cell_done)
        except ValueError as e:
            raise _fail(str(e)) from None
        count = len(result.edits)
        fixed_name, fixed_value = result.fixed
        note = (
            f"Sweep {next(self._requests)}: {count} edits in {time.perf_counter() - start:.1f} s; "
            f"{PERSPECTIVE_TITLES[fixed_name]} at {fixed_value:g}. {self._size_note(picture, False)}."
        )
        return result.grid, note

    def info(self) -> dict:
        """What the server edits with: the model (and baseline), its resolution, what it accepts."""

        def about(model: EditingModel | None) -> dict | None:
            if model is None:
                return None
            return {
                "description": model.description,
                "rewards": model.has_rewards,
                "reward_guidance": model.reward_guidance,
                "resolution": model.resolution.resolution,
                "trained_resolution": model.trained_resolution,
                "schedulers": list(model.schedulers),
            }

        return {
            "model": about(self.model),
            "baseline": about(self.baseline),
            "perspectives": list(PERSPECTIVES),
            "ranges": {
                "scores": [0, 5],
                "seed": [0, MAX_SEED],
                "num_inference_steps": [1, self.max_inference_steps],
                **{name: list(bounds) for name, bounds in GUIDANCE_RANGES.items()},
                "reward_guidance_scale": list(REWARD_GUIDANCE_RANGE) if self.model.reward_guidance else [1, 1],
                "text_length": MAX_TEXT,
            },
        }

    # --- the page ---------------------------------------------------------------------------------------------
    def blocks(self) -> gr.Blocks:
        """The page: an "Edit" tab and a "Reward sweep" tab sharing the inputs."""
        model, d = self.model, self.defaults
        rewards_on = model.has_rewards
        with gr.Blocks(title="mredit", analytics_enabled=False) as page:
            gr.Markdown(
                "## mredit: instruction-based editing with multi-reward conditioning\n"
                f"**model** {model.description}"
                + (f"  \n**baseline** {self.baseline.description}" if self.baseline else ""),
                elem_id="header",
            )
            for note in (model.resolution.note, model.resolution.warning):
                if note:
                    gr.Markdown(f"*{note}*")
            with gr.Row():
                with gr.Column(scale=1):
                    image = gr.Image(
                        label="input image",
                        type="filepath",
                        image_mode=None,
                        sources=["upload", "clipboard"],
                        elem_id="input-image",
                        height=260,
                    )
                    instruction = gr.Textbox(
                        label="instruction",
                        placeholder="e.g. make the square red",
                        max_length=MAX_TEXT,
                        elem_id="instruction",
                    )
                    with gr.Accordion("rewards (0-5 each; the model was trained to match them)", open=True):
                        if not rewards_on:
                            gr.Markdown(
                                "*This model has no reward conditioner (a baseline): the rewards do nothing, so "
                                "the sliders are off.*",
                                elem_id="no-rewards-note",
                            )
                        sliders, failures = [], []
                        for name in PERSPECTIVES:
                            with gr.Row():
                                sliders.append(
                                    gr.Slider(
                                        0,
                                        5,
                                        value=d.score,
                                        step=0.5,
                                        label=PERSPECTIVE_TITLES[name],
                                        interactive=rewards_on,
                                        elem_id=f"score-{name}",
                                        scale=2,
                                    )
                                )
                                failures.append(
                                    gr.Textbox(
                                        "",
                                        label=f"{name} failure text (optional)",
                                        placeholder="none",
                                        max_length=MAX_TEXT,
                                        interactive=rewards_on,
                                        elem_id=f"failure-{name}",
                                        scale=2,
                                    )
                                )
                    with gr.Accordion("sampling", open=False):
                        with gr.Row():
                            seed = gr.Number(
                                d.seed, label="seed", precision=0, minimum=0, maximum=MAX_SEED, elem_id="seed"
                            )
                            steps = gr.Slider(
                                1,
                                self.max_inference_steps,
                                value=d.num_inference_steps,
                                step=1,
                                label="steps",
                                elem_id="steps",
                            )
                            scheduler = gr.Dropdown(
                                list(model.schedulers), value="auto", label="scheduler", elem_id="scheduler"
                            )
                        with gr.Row():
                            text_scale = gr.Slider(
                                *GUIDANCE_RANGES["text_guidance_scale"],
                                value=d.text_guidance_scale,
                                step=0.1,
                                label="text guidance",
                                elem_id="text-guidance",
                            )
                            image_scale = gr.Slider(
                                *GUIDANCE_RANGES["image_guidance_scale"],
                                value=d.image_guidance_scale,
                                step=0.1,
                                label="image guidance",
                                elem_id="image-guidance",
                            )
                            reward_scale = gr.Slider(
                                *REWARD_GUIDANCE_RANGE,
                                value=d.reward_guidance_scale,
                                step=0.1,
                                label="reward guidance"
                                + ("" if model.reward_guidance else " (off: the model learned no null condition)"),
                                interactive=model.reward_guidance,
                                elem_id="reward-guidance",
                            )
                        keep_size = gr.Checkbox(
                            False, label="resize the edit back to the input's size", elem_id="keep-size"
                        )
                with gr.Column(scale=1), gr.Tabs():
                    with gr.Tab("Edit", id="edit-tab"):
                        edit_button = gr.Button("Edit", variant="primary", elem_id="edit-button")
                        with gr.Row():
                            edited = gr.Image(
                                label="edit",
                                type="pil",
                                format="png",
                                interactive=False,
                                elem_id="edit-output",
                                height=300,
                            )
                            baseline_edited = gr.Image(
                                label="baseline (no reward condition)",
                                type="pil",
                                format="png",
                                interactive=False,
                                visible=self.baseline is not None,
                                elem_id="baseline-output",
                                height=300,
                            )
                        status = gr.Markdown(elem_id="status")
                    with gr.Tab("Reward sweep", id="sweep-tab"):
                        gr.Markdown(
                            "The same edit and seed over a grid of two perspectives' scores; the third keeps its "
                            "slider's score." + ("" if rewards_on else " *Off: this model has no reward conditioner.*")
                        )
                        with gr.Row():
                            x_name = gr.Dropdown(
                                list(PERSPECTIVES), value="following", label="columns", elem_id="sweep-x"
                            )
                            x_values = gr.Textbox(SWEEP_DEFAULT, label="column scores", elem_id="sweep-x-scores")
                            y_name = gr.Dropdown(
                                list(PERSPECTIVES), value="preserving", label="rows", elem_id="sweep-y"
                            )
                            y_values = gr.Textbox(SWEEP_DEFAULT, label="row scores", elem_id="sweep-y-scores")
                        sweep_button = gr.Button(
                            "Sweep", variant="primary", interactive=rewards_on, elem_id="sweep-button"
                        )
                        grid = gr.Image(
                            label="reward sweep", type="pil", format="png", interactive=False, elem_id="sweep-output"
                        )
                        sweep_status = gr.Markdown(elem_id="sweep-status")
            if self.examples:
                with_instructions = any(example.instruction for example in self.examples)
                gr.Examples(
                    [[str(e.image), e.instruction] if with_instructions else [str(e.image)] for e in self.examples],
                    inputs=[image, instruction] if with_instructions else [image],
                    examples_per_page=7,
                    label="examples (click one)",
                    cache_examples=False,
                    elem_id="examples",
                )
            sampling = [seed, steps, scheduler, text_scale, image_scale, reward_scale]
            for component in (image, *sliders, *sampling, x_name, y_name):
                _checked(component)
            edit_button.click(
                self.edit,
                inputs=[image, instruction, *sliders, *failures, *sampling, keep_size],
                outputs=[edited, baseline_edited, status],
                api_name="edit",
                concurrency_id=QUEUE_ID,
            )
            sweep_button.click(
                self.sweep,
                inputs=[image, instruction, x_name, x_values, y_name, y_values, *sliders, *failures, *sampling],
                outputs=[grid, sweep_status],
                api_name="sweep",
                concurrency_id=QUEUE_ID,
            )
            gr.api(self.info, api_name="info", queue=False)
        return page


def _baseline_options(options: EditOptions) -> EditOptions:
    """The baseline edits with the same seed, steps, scheduler and guidance, without rewards."""
    return replace(options, scores=None, feedback=None, reward_guidance_scale=1.0)


def launch(
    app: EditorApp,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_file_size: str | int = "64mb",
    max_queue: int = 64,
    block: bool = True,
    quiet: bool = False,
) -> gr.Blocks:
    """Serve ``app`` on ``host:port`` (no public share link), with a request queue of ``max_queue`` waiting
    requests; ``block``: until interrupted (else return the running page; ``page.close()`` stops it)."""
    page = app.blocks()
    page.queue(default_concurrency_limit=1, max_size=max_queue)
    page.launch(
        server_name=host,
        server_port=port,
        share=False,
        show_error=True,  # messages, never tracebacks: ours (gr.Error) and gradio's own, e.g. a path not uploaded
        max_file_size=max_file_size,
        prevent_thread_lock=not block,
        quiet=quiet,
        ssr_mode=False,
        enable_monitoring=False,
        mcp_server=False,
        footer_links=["api", "settings"],
        theme=gr.themes.Default(font=THEME_FONTS, font_mono=["ui-monospace", "monospace"]),
        css=PAGE_CSS,
    )
    return page
