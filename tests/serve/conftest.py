"""One tiny reward model (trained two steps in the test) served with a baseline beside it, on 127.0.0.1, for the
browser and API tests; the page's examples are three photos with instructions."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
from edit_helpers import write_photo
from tiny_model import as_module, tiny_parts
from tiny_trained import train_checkpoint

from mredit.editing import open_model
from mredit.export.export import export_module

TRAINED = 16  # the tiny model's training resolution (size multiple 4): a 720x477 photo is edited at 16x12


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(name="free_port")
def free_port_fixture():
    """``free_port()``: a port nothing listens on."""
    return free_port


@dataclass
class Server:
    url: str
    page: object  # the running gr.Blocks
    editor: object  # the EditorApp
    photo: Path  # a 720x477 JPEG


@pytest.fixture(scope="session")
def reward_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve_reward") / "reward.ckpt"
    train_checkpoint(path, resolution=TRAINED)
    return path


@pytest.fixture(scope="session")
def baseline_export(tmp_path_factory) -> Path:
    """An untrained tiny model without a reward conditioner, as an export folder (no recorded resolution)."""
    return export_module(as_module(tiny_parts("pixel")), tmp_path_factory.mktemp("serve_baseline") / "export")


@pytest.fixture(scope="session")
def photo(tmp_path_factory) -> Path:
    return write_photo(tmp_path_factory.mktemp("serve_photo") / "photo.jpg", (720, 477))


@pytest.fixture(scope="session")
def server(reward_checkpoint, baseline_export, photo, tmp_path_factory) -> Server:
    root = tmp_path_factory.mktemp("serve")
    saved = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")  # uploads and outputs of this session only
    from mredit.serve.app import EditorApp, launch
    from mredit.serve.examples import collect_examples

    folder = root / "examples"
    folder.mkdir()
    for index, instruction in enumerate(["make the square red", "remove the circle", "make it snowy"]):
        write_photo(folder / f"{index}.jpg", (48 + 8 * index, 32))
        (folder / f"{index}.txt").write_text(instruction)
    with open_model(reward_checkpoint) as model, open_model(baseline_export, resolution=TRAINED) as baseline:
        editor = EditorApp(model, baseline, collect_examples(folder, root / "gallery", 3))
        page = launch(editor, port=free_port(), block=False, quiet=True)
        try:
            yield Server(page.local_url, page, editor, photo)
        finally:
            page.close()
            if saved is None:
                os.environ.pop("GRADIO_TEMP_DIR", None)
            else:
                os.environ["GRADIO_TEMP_DIR"] = saved
