"""The standard metrics against an independent computation from their formulas (tiny random CLIP, DINO, DINOv2):
pixel distances on known images, every metric of both protocols per item to 1e-5, the command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from eval_helpers import (
    CLIP_NORM,
    IMAGENET_NORM,
    random_image,
    ref_clip_image,
    ref_clip_text,
    ref_cos,
    ref_dino,
    ref_directional,
    ref_l1_l2,
    ref_pixels,
    save_tiny_models,
    tiny_clip,
    tiny_dinov2,
    tiny_vit,
)
from PIL import Image

from mredit.cli import main
from mredit.eval.encoders import ClipEncoder, DinoEncoder
from mredit.eval.evaluate import evaluate_metrics
from mredit.eval.metrics import (
    center_crop,
    clip_pixels,
    dino_pixels,
    directional,
    pixel_distances,
    resize_short_side,
)

TOL = 1e-5


def test_pixel_distances_on_known_images():
    red, grey = Image.new("RGB", (8, 6), (255, 0, 0)), Image.new("RGB", (8, 6), (51, 51, 51))
    l1, l2 = pixel_distances(red, grey)
    assert l1 == pytest.approx((204 + 51 + 51) / 3 / 255, abs=1e-12)
    assert l2 == pytest.approx((204**2 + 51**2 + 51**2) / 3 / 255**2, abs=1e-12)
    # the edit is resized to the reference's size: a constant image stays constant
    assert pixel_distances(Image.new("RGB", (20, 15), (255, 0, 0)), grey) == pytest.approx((l1, l2), abs=1e-12)
    half = Image.new("RGB", (8, 6), (51, 51, 51))
    half.paste((255, 255, 255), (0, 0, 4, 6))  # half of the pixels differ by 204 in every channel
    assert pixel_distances(half, grey) == pytest.approx((0.5 * 204 / 255, 0.5 * (204 / 255) ** 2), abs=1e-12)
    assert pixel_distances(grey, grey) == (0.0, 0.0)


def test_model_inputs_match_the_reference_preprocessing():
    rng = np.random.default_rng(5)
    images = [random_image(rng, 41, 30), random_image(rng, 30, 57), random_image(rng, 300, 300)]
    clip_batch, dino_batch = clip_pixels(images, 224), dino_pixels(images)
    for i, image in enumerate(images):
        assert torch.allclose(clip_batch[i : i + 1], ref_pixels(image, 224, 224, *CLIP_NORM), atol=1e-6)
        assert torch.allclose(dino_batch[i : i + 1], ref_pixels(image, 256, 224, *IMAGENET_NORM), atol=1e-6)
    assert clip_batch.shape == (3, 3, 224, 224) and dino_batch.shape == (3, 3, 224, 224)


def test_resize_and_crop_follow_torchvision():
    image = Image.new("RGB", (300, 200))
    assert resize_short_side(image, 224).size == (336, 224)
    assert resize_short_side(Image.new("RGB", (200, 301)), 224).size == (224, 337)  # int(224 * 301 / 200) = 337
    assert center_crop(Image.new("RGB", (257, 224)), 224).getbbox() is None
    with pytest.raises(ValueError, match="cannot center-crop"):
        center_crop(Image.new("RGB", (100, 300)), 224)


def test_directional_similarity_formula_and_zero_change():
    rng = np.random.default_rng(0)
    a, b, c, d = (rng.normal(size=(1, 8)) for _ in range(4))
    unit = lambda x: x / np.linalg.norm(x)  # noqa: E731
    got = float(directional(*(torch.tensor(x) for x in (a, b, c, d)))[0])
    assert got == pytest.approx(ref_directional(unit(a[0]), unit(b[0]), unit(c[0]), unit(d[0])), abs=1e-12)
    same = float(directional(torch.tensor(a), torch.tensor(b), torch.tensor(c), torch.tensor(c))[0])
    assert same == 0.0  # identical captions: the text change is zero


def _benchmark(tmp_path, rng, captions=True):
    """Five items, sources, targets and edits of different sizes, two categories; item e4 has no edit."""
    root = tmp_path / "bench"
    (root / "img").mkdir(parents=True)
    edits = tmp_path / "edits"
    edits.mkdir()
    images, lines = {}, []
    for i in range(5):
        item_id = f"e{i}"
        source, target = random_image(rng, 40 + 3 * i, 30 + i), random_image(rng, 40 + 3 * i, 30 + i)
        edit = random_image(rng, 32, 32) if i != 2 else source.copy()  # e2: an edit that changed nothing
        source.save(root / "img" / f"{item_id}_in.png")
        target.save(root / "img" / f"{item_id}_out.png")
        entry = {"id": item_id, "image": f"img/{item_id}_in.png", "target": f"img/{item_id}_out.png"}
        entry.update(instruction=f"edit {i}", category="local" if i % 2 else "global")
        if captions:
            entry["input_caption"] = f"a photo number {i}"
            entry["output_caption"] = f"a red photo number {i}" if i != 3 else entry["input_caption"]
        lines.append(json.dumps(entry))
        if i != 4:
            edit.save(edits / f"{item_id}.png")
        images[item_id] = (source, target, edit, entry)
    (root / "bench.jsonl").write_text("\n".join(lines) + "\n")
    return root / "bench.jsonl", edits, images


def _reference(images, clip, tokenizer, dino):
    """Every metric of every scored item, from the formulas."""
    expected = {}
    for item_id, (source, target, edit, entry) in images.items():
        if item_id == "e4":
            continue
        e_edit, e_src, e_tgt = (ref_clip_image(clip, x) for x in (edit, source, target))
        d_edit, d_src, d_tgt = (ref_dino(dino, x) for x in (edit, source, target))
        t_in, t_out = (ref_clip_text(clip, tokenizer, entry[k]) for k in ("input_caption", "output_caption"))
        l1_t, l2_t = ref_l1_l2(edit, target)
        expected[item_id] = {
            "magicbrush": {
                "l1": l1_t,
                "l2": l2_t,
                "clip_i": ref_cos(e_edit, e_tgt),
                "dino": ref_cos(d_edit, d_tgt),
                "clip_t": ref_cos(e_edit, t_out),
            },
            "emu-edit": {
                "clip_dir": ref_directional(e_src, e_edit, t_in, t_out),
                "clip_i": ref_cos(e_edit, e_src),
                "clip_out": ref_cos(e_edit, t_out),
                "l1": ref_l1_l2(edit, source)[0],
                "dino": ref_cos(d_edit, d_src),
            },
        }
    return expected


def test_every_metric_matches_the_reference_through_the_command(tmp_path, capsys):
    rng = np.random.default_rng(0)
    bench, edits, images = _benchmark(tmp_path, rng)
    clip_dir, dino_dir = save_tiny_models(tmp_path / "models")
    argv = ["eval", "metrics", "--edits", str(edits), "--benchmark", str(bench), "--out", str(tmp_path / "out")]
    argv += ["--clip", str(clip_dir), "--dino", str(dino_dir), "--device", "cpu", "--batch_size", "2"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["coverage"]["missing_edits"] == ["e4"] and printed["coverage"]["scored"] == 4
    clip, tokenizer = tiny_clip()
    expected = _reference(images, clip, tokenizer, tiny_vit())
    scores = {row["id"]: row for row in map(json.loads, (tmp_path / "out" / "scores.jsonl").read_text().splitlines())}
    assert set(scores) == set(expected)
    for item_id, by_protocol in expected.items():
        for protocol, metrics in by_protocol.items():
            for metric, value in metrics.items():
                assert scores[item_id][protocol][metric] == pytest.approx(value, abs=TOL), (item_id, protocol, metric)
    assert expected["e2"]["emu-edit"]["l1"] == 0.0 and scores["e2"]["emu-edit"]["clip_dir"] == 0.0  # no change
    assert scores["e3"]["emu-edit"]["clip_dir"] == 0.0  # identical captions
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    for protocol in ("magicbrush", "emu-edit"):
        for metric, entry in results["overall"][protocol].items():
            values = [expected[i][protocol][metric] for i in expected]
            assert entry["mean"] == pytest.approx(np.mean(values), abs=TOL) and entry["n"] == 4
            assert entry["ci"][0] <= entry["mean"] <= entry["ci"][1]
        local = results["per_category"]["local"][protocol]["l1"]
        assert local["mean"] == pytest.approx(np.mean([expected[i][protocol]["l1"] for i in ("e1", "e3")]), abs=TOL)
    assert results["coverage"]["identical_captions"] == 1 and results["models"]["clip"] == str(clip_dir)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## MagicBrush" in report and "## Emu Edit" in report and "CLIP-dir" in report and "e4" in report


def test_dinov2_emu_protocol_without_captions_and_final_turns(tmp_path):
    rng = np.random.default_rng(1)
    bench, edits, images = _benchmark(tmp_path, rng, captions=False)
    clip, tokenizer = tiny_clip()
    dinov2 = tiny_dinov2()
    results = evaluate_metrics(
        edits,
        bench,
        tmp_path / "out",
        protocol="emu-edit",
        clip=ClipEncoder(clip, None, "tiny"),
        dino=DinoEncoder(dinov2, "tiny-dinov2"),
        batch_size=3,
    )
    assert results["protocols"] == ["emu-edit"]
    overall = results["overall"]["emu-edit"]
    assert overall["clip_dir"]["n"] == 0 and overall["clip_out"]["mean"] is None  # no captions: not computed
    assert results["coverage"]["not_computed"]["emu-edit"]["clip_out"] == {"no output caption": 4}
    dino = [ref_cos(ref_dino(dinov2, images[i][2]), ref_dino(dinov2, images[i][0])) for i in ("e0", "e1", "e2", "e3")]
    assert overall["dino"]["mean"] == pytest.approx(np.mean(dino), abs=TOL)
    with pytest.raises(ValueError, match="--turns final needs"):
        evaluate_metrics(edits, bench, tmp_path / "o", clip=ClipEncoder(clip), dino=DinoEncoder(dinov2), turns="final")


def test_user_errors_are_one_line(tmp_path, capsys):
    rng = np.random.default_rng(2)
    bench, edits, _ = _benchmark(tmp_path, rng)
    argv = ["eval", "metrics", "--edits", str(edits), "--benchmark", str(bench), "--out", str(tmp_path / "o")]
    assert main([*argv, "--clip", str(tmp_path / "no-such-model"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mredit eval metrics: error: cannot load the CLIP model") and err.count("\n") == 1
    assert main([*argv[:3], str(tmp_path / "none"), *argv[4:]]) == 1
    assert "edits directory not found" in capsys.readouterr().err
