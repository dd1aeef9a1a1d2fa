import numpy as np
import pytest
from PIL import Image
from tiny_model import reward_pipeline

from mredit.cli import main
from mredit.cli.edit import check_scores
from mredit.export.export import export_module


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import types

    pipe = reward_pipeline(vae="pixel")
    module = types.SimpleNamespace(
        unet=pipe.unet,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        noise_scheduler=pipe.scheduler,
        reward_conditioner=pipe.conditioner,
    )
    return export_module(module, tmp_path_factory.mktemp("model") / "export")


def _save(path, mode="RGB", size=(20, 14)):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode).save(path)
    return path


def _edit(model_dir, *extra):
    return main(["edit", "--model", str(model_dir), "--num_inference_steps", "2", "--resolution", "16", *extra])


def test_edit_one_image(model_dir, tmp_path) -> None:
    src = _save(tmp_path / "in.jpg")
    out_a, out_b = tmp_path / "a.png", tmp_path / "b.png"
    assert _edit(model_dir, "--image", str(src), "--instruction", "make it red", "--out", str(out_a)) == 0
    assert _edit(model_dir, "--image", str(src), "--instruction", "make it red", "--out", str(out_b)) == 0
    a, b = np.asarray(Image.open(out_a)), np.asarray(Image.open(out_b))
    assert a.shape == (12, 16, 3) and np.array_equal(a, b)  # 20x14 fitted to 16x12 (multiple 4), same seed
    out_c = tmp_path / "c.png"
    args = ["--image", str(src), "--instruction", "make it red", "--out", str(out_c), "--scores", "[0, 1, 2]"]
    assert _edit(model_dir, *args, "--feedback", "[not red, blurry, None]", "--scheduler", "ddim") == 0
    assert not np.array_equal(a, np.asarray(Image.open(out_c)))


def test_edit_folder_converts_modes_and_skips_unreadable(model_dir, tmp_path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    _save(folder / "rgba.png", "RGBA")
    _save(folder / "gray.png", "L")
    Image.fromarray(np.full((14, 20), 40000, dtype=np.uint16)).save(folder / "gray16.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "out"
    assert _edit(model_dir, "--images", str(folder), "--instruction", "x", "--out_dir", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["gray.png", "gray16.png", "rgba.png"]


def test_edit_errors(model_dir, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert _edit(model_dir, "--image", str(bad), "--instruction", "x", "--out", str(tmp_path / "o.png")) == 1
    assert "cannot read image" in capsys.readouterr().err
    assert _edit(model_dir, "--image", str(bad), "--instruction", "x", "--out", "o.png", "--scores", "[5, 5]") == 2
    assert "scores" in capsys.readouterr().err  # a command-line error: not three numbers
    assert _edit(model_dir, "--image", str(bad), "--instruction", "x", "--out", "o.png", "--scores", "[5, 5, 6]") == 1
    assert "three numbers in [0, 5]" in capsys.readouterr().err
    assert main(["edit", "--model", str(tmp_path / "nothing"), "--image", "x", "--instruction", "x", "--out", "o"]) == 1
    assert "model not found" in capsys.readouterr().err
    assert check_scores([5, 4.5, 0]) == (5.0, 4.5, 0.0)


def test_edit_from_shards(model_dir, tmp_path) -> None:
    from mredit.synth.generate import write_synth_shards

    write_synth_shards(tmp_path / "shards", "test", 3, resolution=16, seed=0)
    out = tmp_path / "edited"
    assert _edit(model_dir, "--shards", str(tmp_path / "shards"), "--out_dir", str(out)) == 0
    assert len(list(out.glob("*.png"))) == 3
