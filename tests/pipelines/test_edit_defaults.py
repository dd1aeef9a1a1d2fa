"""``mredit edit`` and the pipeline default to the resolution the model was trained at (recorded in checkpoints and
exports; older ones fall back to 512 with a note), keep the input's aspect ratio, show progress on stderr."""

from __future__ import annotations

import json
import logging
import time

import pytest
import torch
from edit_helpers import without_resolution, write_photo
from PIL import Image
from tiny_trained import train_checkpoint

from mredit.cli import main
from mredit.export.export import export_checkpoint
from mredit.models.loading import load_module_from_checkpoint
from mredit.pipelines import sizing
from mredit.pipelines.reward_edit import RewardEditPipeline

TRAINED = 16  # the tiny model's training resolution; its size multiple is 4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("trained") / "model.ckpt"
    train_checkpoint(path, resolution=TRAINED)
    return path


@pytest.fixture(scope="module")
def old_checkpoint(trained, tmp_path_factory):
    return without_resolution(trained, tmp_path_factory.mktemp("old") / "old.ckpt")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    return write_photo(tmp_path_factory.mktemp("photo") / "photo.jpg", (720, 477))


def _edit(model, photo, out, *extra):
    return main(
        [
            "edit",
            "--model",
            str(model),
            "--image",
            str(photo),
            "--instruction",
            "make it red",
            "--out",
            str(out),
            *extra,
        ]
    )


def test_checkpoints_and_exports_record_the_training_resolution(trained, tmp_path):
    assert torch.load(trained, map_location="cpu", weights_only=False)["trained_resolution"] == TRAINED
    assert load_module_from_checkpoint(trained).trained_resolution == TRAINED
    export = export_checkpoint(trained, tmp_path / "export")
    assert json.loads((export / "model_index.json").read_text())["resolution"] == TRAINED
    pipe = RewardEditPipeline.from_pretrained(export)
    assert pipe.trained_resolution == TRAINED
    assert pipe.fit_image(Image.new("RGB", (720, 477))).size == (16, 12)  # Python: the same default


def test_a_photo_is_edited_at_the_trained_resolution_fast_with_a_progress_bar(trained, photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    start = time.perf_counter()
    assert _edit(trained, photo, out) == 0  # 30 steps, no --resolution
    seconds = time.perf_counter() - start
    width, height = Image.open(out).size
    assert (width, height) == (16, 12)  # the long side at 16 px; at 512 px this took more than 12 minutes
    assert abs(height - width * 477 / 720) <= 2  # the aspect ratio, up to the snapping to the multiple (4)
    assert seconds < 60, seconds  # a few seconds on an idle 2-core CPU
    err = capsys.readouterr().err
    assert "denoising" in err and "30/30" in err and "step/s" in err  # the bar over the steps, on stderr
    assert "note" not in err and "warning" not in err

    assert _edit(trained, photo, out, "--quiet", "true") == 0
    captured = capsys.readouterr()
    assert "denoising" not in captured.err and "wrote" in captured.out

    assert _edit(trained, photo, tmp_path / "kept.png", "--keep_size", "true", "--quiet", "true") == 0
    assert Image.open(tmp_path / "kept.png").size == (720, 477)


def test_a_resolution_far_above_the_trained_one_warns_once_with_both(trained, photo, tmp_path, capsys):
    assert _edit(trained, photo, tmp_path / "out.png", "--resolution", "40", "--quiet", "true") == 0
    assert Image.open(tmp_path / "out.png").size == (40, 28)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "--resolution 40" in warnings[0] and "16 px" in warnings[0], warnings
    assert _edit(trained, photo, tmp_path / "out.png", "--resolution", "32", "--quiet", "true") == 0  # 2x: fine
    assert "warning" not in capsys.readouterr().err


def test_an_old_checkpoint_falls_back_with_a_one_line_note(old_checkpoint, photo, tmp_path, capsys, monkeypatch):
    assert load_module_from_checkpoint(old_checkpoint).trained_resolution is None
    choice = sizing.choose_resolution(None, None, "old.ckpt")
    assert choice.resolution == 512 and "fallback, 512 px" in choice.note and "old.ckpt" in choice.note
    monkeypatch.setattr(sizing, "FALLBACK_RESOLUTION", TRAINED)  # the same path, without sampling at 512 px
    assert _edit(old_checkpoint, photo, tmp_path / "out.png", "--quiet", "true") == 0
    assert Image.open(tmp_path / "out.png").size == (16, 12)
    notes = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(notes) == 1 and notes[0].startswith("mredit edit: note: ") and str(old_checkpoint) in notes[0]
    assert "fallback, 16 px" in notes[0] and "--resolution" in notes[0]


def test_an_old_export_falls_back_with_a_note_once(old_checkpoint, tmp_path, caplog):
    export = export_checkpoint(old_checkpoint, tmp_path / "export")
    assert "resolution" not in json.loads((export / "model_index.json").read_text())
    pipe = RewardEditPipeline.from_pretrained(export)
    assert pipe.trained_resolution is None
    with caplog.at_level(logging.WARNING, logger="mredit.pipelines.reward_edit"):
        assert pipe.fit_image(Image.new("RGB", (720, 477))).size == (512, 340)  # the fallback, 512
        assert pipe.fit_image(Image.new("RGB", (720, 477)), resolution=16).size == (16, 12)
        pipe.fit_image(Image.new("RGB", (720, 477)))
    notes = [record.getMessage() for record in caplog.records]
    assert len(notes) == 1 and "fallback, 512 px" in notes[0]


def test_folders_show_a_bar_over_the_images_with_images_per_second(trained, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(2):
        write_photo(folder / f"{index}.jpg", (60, 40))
    args = ["edit", "--model", str(trained), "--images", str(folder), "--instruction", "x", "--out_dir"]
    assert main([*args, str(tmp_path / "out"), "--num_inference_steps", "2"]) == 0
    err = capsys.readouterr().err
    assert "editing" in err and "2/2" in err and "img/s" in err and "denoising" not in err
    assert sorted(Image.open(p).size for p in (tmp_path / "out").iterdir()) == [(16, 12), (16, 12)]
    assert main([*args, str(tmp_path / "quiet"), "--num_inference_steps", "2", "--quiet", "true"]) == 0
    assert "editing" not in capsys.readouterr().err
