"""``mredit serve``: an interactive editor in the browser, with reward sliders and a baseline beside the edit.

gradio is imported when the command runs (``mredit.serve.app``), so ``mredit --help``, ``mredit serve --help`` and
the other commands never load it.
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import ExitStack, nullcontext

from mredit.editing.service import open_model
from mredit.serve.examples import collect_examples, default_examples_source


def serve(
    model: str,
    baseline: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    examples: str | None = None,
    num_examples: int = 14,
    resolution: int | None = None,
    use_ema: bool = True,
    max_inference_steps: int = 100,
    max_file_size: str = "64mb",
    max_queue: int = 64,
    threads: int | None = None,
) -> None:
    """Serve a page to edit images with a trained model, with reward sliders (until Ctrl-C).

    The page has the input image (upload, or an example), the instruction, the three reward sliders (0-5) and
    failure texts, the sampling settings, the edit (and with --baseline, the baseline's edit of the same input
    and seed beside it) and a "reward sweep" tab (the same edit over a grid of two perspectives' scores). Its
    functions are also an API for gradio's client (docs/serve.md). Requests wait in a queue; the models are
    loaded once. Binds 127.0.0.1 (this machine only) unless --host says otherwise; no public share link.

    Example (after make demo; also make serve):

        mredit serve --model reports/demo/runs/reward/final.ckpt --baseline reports/demo/runs/baseline/final.ckpt

    Args:
        model: Export folder or Lightning .ckpt (InstructPix2Pix, or a module with an edit method: SmartEdit).
        baseline: A second model edited beside the first with the same input and seed (no rewards).
        host: Address to bind (0.0.0.0: every interface, reachable from the network).
        port: Port to listen on.
        examples: Examples gallery: a folder of images (<stem>.txt beside one gives its instruction) or shards
            (default: the demo's clean test set, reports/demo/data/test, when it exists).
        num_examples: At most this many examples (0: none).
        resolution: Long side of the resized input, in pixels (default: the resolution the model was trained at).
        use_ema: With an InstructPix2Pix .ckpt: use the EMA weights (false: the raw ones).
        max_inference_steps: The largest step count a request may ask for.
        max_file_size: The largest upload gradio accepts, e.g. 64mb.
        max_queue: Requests that may wait in the queue (more are turned away with a message).
        threads: torch's CPU threads while sampling (default: torch's, one per core; tiny models such as the
            demo's are fastest on 1).
    """
    if not 1 <= port <= 65535:
        raise ValueError(f"--port must be in [1, 65535], got {port}")
    if num_examples < 0:
        raise ValueError(f"--num_examples must be >= 0, got {num_examples}")
    source = examples if examples is not None else default_examples_source()
    if max_inference_steps < 1:
        raise ValueError(f"--max_inference_steps must be >= 1, got {max_inference_steps}")
    with ExitStack() as stack:
        gallery = []
        if source is not None and num_examples:  # PNG copies in a folder of ours, removed when the server stops
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="mredit-serve-examples-"))
            gallery = collect_examples(source, folder, num_examples)
        opened = stack.enter_context(open_model(model, use_ema, resolution=resolution, num_threads=threads))
        for message in (opened.resolution.note, opened.resolution.warning):
            if message:
                print(f"mredit serve: note: {message}", file=sys.stderr)
        other = stack.enter_context(
            open_model(baseline, use_ema, resolution=opened.resolution.resolution, num_threads=threads)
            if baseline
            else nullcontext()
        )
        from mredit.serve import app  # gradio: only now

        editor = app.EditorApp(opened, other, gallery, max_inference_steps=max_inference_steps)
        print(f"mredit serve: {opened.description}" + (f"; baseline {other.description}" if other else ""))
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(f"mredit serve: note: binding {host}: the page is reachable from other machines", file=sys.stderr)
        page = app.launch(
            editor, host=host, port=port, max_file_size=max_file_size, max_queue=max_queue, block=False, quiet=True
        )
        print(f"mredit serve: open {page.local_url} (Ctrl-C stops)", flush=True)
        page.block_thread()


COMMANDS = serve
