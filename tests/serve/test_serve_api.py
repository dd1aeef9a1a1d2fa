"""The ``mredit serve`` functions through gradio's client API (a real server on 127.0.0.1): sizes, rewards,
determinism, 8 concurrent requests, progress, and a one-line message for every bad input."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_the_server_binds_localhost_without_a_share_link(server, client):
    assert server.page.server_name == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")
    assert not server.page.share and server.page.share_url is None
    info = client.predict(api_name="/info")
    assert info["model"]["rewards"] and not info["model"]["reward_guidance"]
    assert info["model"]["resolution"] == 16 and info["baseline"]["rewards"] is False
    assert info["ranges"]["scores"] == [0, 5] and info["ranges"]["reward_guidance_scale"] == [1, 1]


def test_an_edit_returns_images_of_the_right_size_and_the_rewards_steer_it(server, client):
    photo = handle_file(str(server.photo))
    edited, baseline, note = client.predict(photo, "make the square red", num_inference_steps=8, api_name="/edit")
    assert Image.open(edited).size == (16, 12) and Image.open(baseline).size == (16, 12)
    assert "input 720x477, resized to 16x12" in note
    again, _, _ = client.predict(photo, "make the square red", num_inference_steps=8, api_name="/edit")
    assert np.array_equal(_pixels(edited), _pixels(again))  # same input and seed: the same edit
    low, low_baseline, _ = client.predict(
        photo, "make the square red", following=0, preserving=0, quality=0, num_inference_steps=8, api_name="/edit"
    )
    assert not np.array_equal(_pixels(edited), _pixels(low))
    assert np.array_equal(_pixels(baseline), _pixels(low_baseline))  # the baseline ignores rewards
    kept, _, note = client.predict(photo, "x", keep_size=True, num_inference_steps=2, api_name="/edit")
    assert Image.open(kept).size == (720, 477) and "resized back to 720x477" in note


def test_a_huge_image_is_resized_and_the_size_is_said(server, client, tmp_path):
    Image.new("RGB", (6000, 4000), (30, 120, 200)).save(tmp_path / "huge.png")
    edited, _, note = client.predict(
        handle_file(str(tmp_path / "huge.png")), "x", num_inference_steps=2, api_name="/edit"
    )
    assert Image.open(edited).size == (16, 12) and "input 6000x4000, resized to 16x12" in note


def test_a_sweep_returns_one_grid_image(server, client):
    grid, note = client.predict(
        handle_file(str(server.photo)), "make the square red", x_scores="0, 2.5, 5", y_scores="0, 5",
        num_inference_steps=4, api_name="/sweep",
    )  # fmt: skip
    assert note.startswith("Sweep") and "6 edits" in note
    width, height = Image.open(grid).size
    assert width >= 150 + 3 * 128 and height >= 44 + 2 * 96


def test_eight_concurrent_requests_all_complete(server, client):
    photo = handle_file(str(server.photo))
    jobs = [
        client.submit(photo, "make it red", seed=seed, num_inference_steps=3, api_name="/edit") for seed in range(8)
    ]
    results = [job.result(timeout=300) for job in jobs]
    assert len(results) == 8 and all(Image.open(edited).size == (16, 12) for edited, _, _ in results)
    assert len({_pixels(edited).tobytes() for edited, _, _ in results}) == 8  # each its own seed: none lost or mixed
    with ThreadPoolExecutor(8) as pool:  # eight separate clients at once, as eight visitors
        calls = [
            pool.submit(Client(server.url, verbose=False).predict, photo, "x", seed=1, num_inference_steps=2,
                        api_name="/edit")
            for _ in range(8)
        ]  # fmt: skip
        edits = [_pixels(call.result(timeout=300)[0]) for call in calls]
    assert all(np.array_equal(edits[0], edit) for edit in edits)


def test_progress_is_reported_while_sampling(server, client):
    job = client.submit(handle_file(str(server.photo)), "x", num_inference_steps=100, api_name="/edit")
    seen = []
    deadline = time.monotonic() + 120
    while not job.done() and time.monotonic() < deadline:
        status = job.status()
        if status.progress_data:
            seen.append(status.progress_data[-1])
        time.sleep(0.05)
    job.result(timeout=120)
    assert any(unit.length == 100 and unit.index for unit in seen), seen  # steps done of the 100


BAD_EDITS = [
    (dict(image=None), "no image: upload one"),
    (dict(instruction=""), "the instruction is empty"),
    (dict(instruction="   "), "the instruction is empty"),
    (dict(instruction="x" * 501), "at most 500"),
    (dict(following=7), "instruction following must be a number in [0, 5], got 7"),
    (dict(quality=-0.5), "generation quality must be a number in [0, 5]"),
    (dict(preserving="lots"), "detail preserving must be a number in [0, 5], got 'lots'"),
    (dict(num_inference_steps=0), "steps must be a number in [1, 100]"),
    (dict(num_inference_steps=101), "steps must be a number in [1, 100]"),
    (dict(num_inference_steps=2.5), "num_inference_steps must be a whole number"),
    (dict(seed=-1), "seed must be a number in [0, 4294967295]"),
    (dict(seed=2**40), "seed must be a number in [0, 4294967295]"),
    (dict(text_guidance_scale=100), "text guidance must be a number in [0, 20]"),
    (dict(image_guidance_scale=11), "image guidance must be a number in [0, 10], got 11"),
    (dict(reward_guidance_scale=2), "reward guidance"),
    (dict(scheduler="nope"), "scheduler: Value: nope is not in the list of choices"),
    (dict(following_failure="y" * 501), "at most 500"),
]


@pytest.mark.parametrize(("change", "message"), BAD_EDITS, ids=[m for _, m in BAD_EDITS])
def test_each_bad_value_returns_its_message(server, client, change, message):
    values = {"image": handle_file(str(server.photo)), "instruction": "make it red", "num_inference_steps": 2, **change}
    with pytest.raises(Exception) as failure:
        client.predict(**values, api_name="/edit")
    assert message in str(failure.value)


def test_bad_files_return_their_message(server, client, tmp_path):
    (tmp_path / "notes.png").write_text("not an image at all")
    png = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), (200, 0, 0)).save(png)
    (tmp_path / "corrupt.png").write_bytes(png.read_bytes()[:60])  # a PNG header and no pixels
    for name in ("notes.png", "corrupt.png"):
        with pytest.raises(Exception) as failure:
            client.predict(handle_file(str(tmp_path / name)), "x", num_inference_steps=2, api_name="/edit")
        assert f"cannot read {name} as an image" in str(failure.value), str(failure.value)
    for sweep, message in [
        (dict(x_perspective="quality", y_perspective="quality"), "two different perspectives"),
        (dict(x_scores="0, 9"), "x score must be a number in [0, 5], got '9'"),
        (dict(y_scores="0, 1, 2, 3, 4, 5, 5"), "give 1 to 6 scores"),
        (dict(x_perspective="style"), "sweep-x"),
    ]:
        with pytest.raises(Exception) as failure:
            client.predict(handle_file(str(server.photo)), "x", num_inference_steps=2, **sweep, api_name="/sweep")
        assert message in str(failure.value) or "choices" in str(failure.value), (sweep, str(failure.value))
    _, _, note = client.predict(handle_file(str(server.photo)), "x", num_inference_steps=2, api_name="/edit")
    assert note.startswith("Edit")  # the server is still serving


def test_server_paths_named_by_a_visitor_are_not_read(server, tmp_path):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(secret)
    url = f"{server.url}gradio_api/call/edit"
    data = [{"path": str(secret), "meta": {"_type": "gradio.FileData"}}, "x", 5, 5, 5, "", "", "", 42, 2, "auto"]
    event = httpx.post(url, json={"data": [*data, 7.5, 1.5, 1.0, False]}, timeout=30).json()["event_id"]
    answer = httpx.get(f"{url}/{event}", timeout=60).text
    assert "event: error" in answer and "not uploaded by a user" in answer and "complete" not in answer
    assert httpx.get(f"{server.url}gradio_api/file={secret}", timeout=30).status_code == 403
    assert server.editor.edit.__self__ is server.editor  # the page's functions are the app's methods
