"""Driving the ``mredit serve`` page in a real headless Chromium: Debian's ``chromium`` (``/usr/bin/chromium``,
installed by ``.ci/run`` when absent) through Python playwright, with no browser download.

Also a script that edits once in a running server's page and saves a screenshot (the one in docs/):

    python tests/helpers/serve_browser.py --url http://127.0.0.1:7860/ --example 3 --out docs/serve.png
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

CHROMIUM = os.environ.get("MREDIT_CHROMIUM", "/usr/bin/chromium")
# a closed network refuses what Chromium would fetch in the background; these keep it from trying
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def browser_page(viewport: tuple[int, int] = (1280, 900)) -> Iterator:
    """A playwright page in a fresh headless Chromium (a new user-data folder each time)."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="mredit-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def open_editor(page, url: str, timeout_ms: int = 30_000) -> None:
    page.goto(url, timeout=timeout_ms)
    page.wait_for_selector("#edit-button", timeout=timeout_ms)


def upload(page, image: Path) -> None:
    page.locator("#input-image input[type=file]").set_input_files(str(image))
    page.wait_for_selector("#input-image img", timeout=30_000)


def pick_example(page, index: int) -> None:
    """Click the ``index``-th row of the examples table: its image and instruction fill the inputs."""
    page.locator("#examples tbody tr").nth(index).click()
    page.wait_for_selector("#input-image img", timeout=30_000)


def set_text(page, elem_id: str, text: str) -> None:
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
    box.fill(text)
    box.blur()


def set_slider(page, elem_id: str, value: float) -> None:
    """Type ``value`` into the slider's number box (as a user does), then check the range input followed."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(f"{value:g}")
    box.press("Enter")
    box.blur()
    page.wait_for_function(
        "([id, v]) => Number(document.querySelector(`#${id} input[type=range]`).value) === v",
        arg=[elem_id, float(value)],
        timeout=10_000,
    )


def text_of(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def press_and_wait(page, button: str, status: str, timeout_ms: int = 120_000) -> str:
    """Press ``button`` and wait until the ``status`` note changes to a new answer (each is numbered); returns
    it."""
    before = text_of(page, status)
    page.locator(f"#{button}").click()
    page.wait_for_function(
        "([id, before]) => { const t = document.querySelector(`#${id}`).innerText.trim();"
        " return t !== before.trim() && /^(Edit|Sweep) \\d+:/.test(t); }",
        arg=[status, before],
        timeout=timeout_ms,
    )
    return text_of(page, status)


def image_of(page, elem_id: str) -> Image.Image:
    """The image the page shows in ``elem_id``, fetched from the server as the page does."""
    source = page.locator(f"#{elem_id} img").first.get_attribute("src")
    response = page.request.get(source)
    assert response.ok, (source, response.status)
    return Image.open(io.BytesIO(response.body())).convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description="edit once in a running mredit serve page and screenshot it")
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--image", type=Path, help="an image to upload (default: click an example)")
    parser.add_argument("--example", type=int, default=0, help="the example to click when --image is not given")
    parser.add_argument("--instruction", help="the instruction (default: the example's)")
    parser.add_argument("--scores", type=float, nargs=3, default=(5, 5, 5))
    parser.add_argument("--out", type=Path, default=Path("docs/serve.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    with browser_page((args.width, args.height)) as page:
        open_editor(page, args.url)
        if args.image:
            upload(page, args.image)
        else:
            pick_example(page, args.example)
        if args.instruction:
            set_text(page, "instruction", args.instruction)
        for name, value in zip(("following", "preserving", "quality"), args.scores):
            set_slider(page, f"score-{name}", value)
        print(press_and_wait(page, "edit-button", "status"))
        page.wait_for_timeout(1500)  # the outputs' fade-in
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
