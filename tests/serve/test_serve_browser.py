"""The ``mredit serve`` page in a real headless Chromium: upload, set the reward sliders, edit, compare; a bad
input shows its message on the page; the reward sweep draws its grid; a screenshot is saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from serve_browser import (
    CHROMIUM,
    browser_page,
    image_of,
    open_editor,
    pick_example,
    press_and_wait,
    set_slider,
    set_text,
    text_of,
    upload,
)

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does)"
)


def _set_scores(page, scores):
    for name, value in zip(("following", "preserving", "quality"), scores):
        set_slider(page, f"score-{name}", value)


def test_the_page_edits_and_the_reward_sliders_change_the_edit(server, tmp_path):
    with browser_page() as page:
        open_editor(page, server.url)
        assert "InstructPix2Pix checkpoint" in text_of(page, "header")
        assert len(page.locator("#baseline-output").all()) == 1  # the baseline beside the edit

        page.locator("#edit-button").click()  # nothing uploaded yet: a message, and the page keeps working
        page.get_by_text("no image: upload one").first.wait_for(timeout=30_000)
        page.locator(".toast-close").first.click()

        upload(page, server.photo)
        set_text(page, "instruction", "make the square red")
        _set_scores(page, (5, 5, 5))
        note = press_and_wait(page, "edit-button", "status")
        assert "input 720x477, resized to 16x12" in note and "following 5, preserving 5, quality 5" in note
        best, best_baseline = image_of(page, "edit-output"), image_of(page, "baseline-output")
        assert best.size == (16, 12)

        _set_scores(page, (0, 0, 0))
        note = press_and_wait(page, "edit-button", "status")
        assert "following 0, preserving 0, quality 0" in note
        worst, worst_baseline = image_of(page, "edit-output"), image_of(page, "baseline-output")
        assert not np.array_equal(np.asarray(best), np.asarray(worst))  # the rewards steer the edit
        assert np.array_equal(np.asarray(best_baseline), np.asarray(worst_baseline))  # same input and seed
        page.screenshot(path=str(tmp_path / "serve.png"))
        assert (tmp_path / "serve.png").stat().st_size > 10_000

        pick_example(page, 1)  # an example: its image and instruction fill the inputs, and it edits
        assert page.locator("#instruction textarea, #instruction input").first.input_value() == "remove the circle"
        assert "input 56x32, resized to 20x12" in press_and_wait(page, "edit-button", "status")

        page.get_by_role("tab", name="Reward sweep").click()
        set_text(page, "sweep-x-scores", "0, 5")
        set_text(page, "sweep-y-scores", "0, 5")
        note = press_and_wait(page, "sweep-button", "sweep-status", timeout_ms=180_000)
        assert note.startswith("Sweep") and "4 edits" in note
        grid = image_of(page, "sweep-output")
        assert grid.width > 2 * 128 and grid.height > 2 * 96  # two columns and two rows of upscaled edits
        page.screenshot(path=str(tmp_path / "sweep.png"))
