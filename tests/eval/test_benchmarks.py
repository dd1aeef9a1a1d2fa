"""The MagicBrush and Emu Edit converters on small samples built from the published layouts (the MagicBrush test
folder; parquet with images as ``{bytes, path}`` structs through pyarrow), their one-line errors, and the metrics
command on the converted benchmarks."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from eval_helpers import random_image, tiny_clip, tiny_vit

from mredit.cli import main
from mredit.eval.benchmarks import convert_emu_edit, convert_magicbrush
from mredit.eval.encoders import ClipEncoder, DinoEncoder
from mredit.eval.evaluate import evaluate_metrics
from mredit.judge.benchmark import load_benchmark

SESSIONS = {"139": ["put a hat on the cat", "make the hat red"], "30": ["add a boat"]}


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _magicbrush_folder(root, rng):
    """The released test layout: edit_sessions.json, images/<img_id>/, global and local descriptions."""
    sessions, global_captions, local_captions = {}, {}, {}
    for img_id, instructions in SESSIONS.items():
        folder = root / "test" / "images" / img_id
        folder.mkdir(parents=True)
        random_image(rng, 24, 20).save(folder / f"{img_id}-input.png")
        global_captions[img_id] = {f"{img_id}-input.png": f"a cat on a sofa {img_id}"}
        local_captions[img_id] = {}
        turns = []
        for k, instruction in enumerate(instructions, 1):
            random_image(rng, 24, 20).save(folder / f"{img_id}-output{k}.png")
            random_image(rng, 24, 20).save(folder / f"{img_id}-mask{k}.png")
            before = f"{img_id}-input.png" if k == 1 else f"{img_id}-output{k - 1}.png"
            turns.append(
                {"input": before, "output": f"{img_id}-output{k}.png", "mask": f"{img_id}-mask{k}.png"}
                | {"instruction": instruction}
            )
            global_captions[img_id][f"{img_id}-output{k}.png"] = f"global after turn {k}"
            local_captions[img_id][f"{img_id}-output{k}.png"] = f"local after turn {k}"
        sessions[img_id] = turns
    for name, data in (
        ("edit_sessions.json", sessions),
        ("global_descriptions.json", global_captions),
        ("local_descriptions.json", local_captions),
    ):
        (root / "test" / name).write_text(json.dumps(data))
    return root / "test"


def _struct(image) -> dict:
    return {"bytes": _png(image), "path": None}


def _magicbrush_parquet(path, rng, drop=None, no_target_row=None):
    rows = []
    for img_id, instructions in SESSIONS.items():
        for k, instruction in enumerate(instructions, 1):
            rows.append(
                {
                    "img_id": img_id,
                    "turn_index": k,
                    "source_img": _struct(random_image(rng, 24, 20)),
                    "mask_img": _struct(random_image(rng, 24, 20)),
                    "instruction": instruction,
                    "target_img": _struct(random_image(rng, 24, 20)),
                }
            )
    if no_target_row is not None:
        rows[no_target_row]["target_img"] = {"bytes": None, "path": None}
    table = pa.Table.from_pylist(rows)
    if drop:
        table = table.drop_columns([drop])
    pq.write_table(table, path)
    return path


def _emu_parquet(path, rng, drop=None):
    tasks = ["background", "add", "remove", "style"]
    rows = [
        {
            "instruction": f"instruction {i}",
            "image": {"bytes": _png(random_image(rng, 30, 22)), "path": f"{i}.png"},
            "task": tasks[i],
            "split": "test",
            "idx": i,
            "hash": f"h{i}",
            "input_caption": f"a street at noon {i}",
            "output_caption": f"a street at night {i}" if i != 2 else f"a street at noon {i}",
        }
        for i in range(4)
    ]
    table = pa.Table.from_pylist(rows)
    if drop:
        table = table.drop_columns([drop])
    pq.write_table(table, path)
    return path


def test_magicbrush_folder_layout(tmp_path):
    root = _magicbrush_folder(tmp_path / "mb", np.random.default_rng(0))
    summary = convert_magicbrush(str(tmp_path / "mb"), tmp_path / "bench" / "mb.jsonl")
    assert summary["items"] == 3 and summary["sessions"] == 2 and summary["layout"] == "folder"
    assert summary["per_category"] == {"turn1": 2, "turn2": 1} and summary["with_output_caption"] == 3
    items = {item.id: item for item in load_benchmark(tmp_path / "bench" / "mb.jsonl")}
    second = items["139_2"]
    assert second.instruction == "make the hat red" and second.category == "turn2"
    assert second.image_path.resolve() == (root / "images" / "139" / "139-output1.png").resolve()
    assert second.target_path.resolve() == (root / "images" / "139" / "139-output2.png").resolve()
    assert second.mask_path.name == "139-mask2.png" and second.load_target().size == (24, 20)
    assert second.input_caption == "global after turn 1" and second.output_caption == "local after turn 2"
    assert second.meta["final_turn"] and not items["139_1"].meta["final_turn"] and items["30_1"].meta["final_turn"]
    convert_magicbrush(str(root), tmp_path / "g.jsonl", captions="global")
    assert load_benchmark(tmp_path / "g.jsonl")[0].output_caption == "global after turn 1"


def test_magicbrush_parquet_layout(tmp_path):
    path = _magicbrush_parquet(tmp_path / "test-00000-of-00001.parquet", np.random.default_rng(1))
    summary = convert_magicbrush(str(path), tmp_path / "mb.jsonl")
    assert summary["layout"] == "parquet" and summary["items"] == 3 and summary["with_target"] == 3
    items = {item.id: item for item in load_benchmark(tmp_path / "mb.jsonl")}
    assert items["139_1"].meta["turns"] == 2 and items["139_2"].meta["final_turn"]
    assert items["30_1"].load_image().size == (24, 20) and items["30_1"].mask_path.is_file()
    assert items["30_1"].output_caption is None  # the parquet release has no captions


def test_emu_edit_parquet(tmp_path):
    path = _emu_parquet(tmp_path / "test-00000-of-00001.parquet", np.random.default_rng(2))
    summary = convert_emu_edit([str(path)], tmp_path / "emu.jsonl")
    assert summary["items"] == 4 and summary["with_target"] == 0 and summary["identical_captions"] == 1
    items = load_benchmark(tmp_path / "emu.jsonl")
    assert [item.id for item in items] == ["test_0", "test_1", "test_2", "test_3"]
    assert [item.category for item in items] == ["background", "add", "remove", "style"]
    assert items[1].input_caption == "a street at noon 1" and items[1].output_caption == "a street at night 1"
    assert items[0].load_image().size == (30, 22) and items[0].meta["hash"] == "h0"
    assert (tmp_path / "emu_images" / "test_0.png").is_file()


@pytest.mark.parametrize(
    ("kind", "broken", "message"),
    [
        ("magicbrush", "column", "missing column 'target_img'"),
        ("magicbrush", "image", "row 1 (img_id 139, turn 2): column 'target_img' has no image bytes"),
        ("emu-edit", "column", "missing column 'output_caption'"),
        ("magicbrush-folder", "image", "MagicBrush image not found"),
        ("magicbrush-folder", "key", "image 139 turn 1 has no 'output'"),
    ],
)
def test_a_missing_column_or_image_is_a_one_line_error_naming_it(tmp_path, capsys, kind, broken, message):
    rng = np.random.default_rng(3)
    if kind == "magicbrush":
        src = _magicbrush_parquet(
            tmp_path / "t.parquet",
            rng,
            drop="target_img" if broken == "column" else None,
            no_target_row=1 if broken == "image" else None,
        )
        src_format = "magicbrush"
    elif kind == "emu-edit":
        src, src_format = _emu_parquet(tmp_path / "t.parquet", rng, drop="output_caption"), "emu-edit"
    else:
        src, src_format = _magicbrush_folder(tmp_path / "mb", rng), "magicbrush"
        if broken == "image":
            (src / "images" / "30" / "30-output1.png").unlink()
        else:
            sessions = json.loads((src / "edit_sessions.json").read_text())
            del sessions["139"][0]["output"]
            (src / "edit_sessions.json").write_text(json.dumps(sessions))
    argv = ["eval", "convert-benchmark", "--src_format", src_format, "--src", str(src)]
    assert main([*argv, "--out", str(tmp_path / "out.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mredit eval convert-benchmark: error: ") and err.count("\n") == 1
    assert message in err


def test_metrics_run_on_the_converted_benchmarks(tmp_path, capsys):
    rng = np.random.default_rng(4)
    _magicbrush_folder(tmp_path / "mb", rng)
    _emu_parquet(tmp_path / "emu.parquet", rng)
    for src_format, src, out in (
        ("magicbrush", tmp_path / "mb", "mb.jsonl"),
        ("emu-edit", tmp_path / "emu.parquet", "emu.jsonl"),
    ):
        argv = [
            "eval",
            "convert-benchmark",
            "--src_format",
            src_format,
            "--src",
            str(src),
            "--out",
            str(tmp_path / out),
        ]
        assert main(argv) == 0
    assert '"items": 3' in capsys.readouterr().out
    clip, tokenizer = tiny_clip()
    encoders = {"clip": ClipEncoder(clip, tokenizer, "tiny"), "dino": DinoEncoder(tiny_vit(), "tiny")}
    for name in ("mb", "emu"):
        items = load_benchmark(tmp_path / f"{name}.jsonl")
        (tmp_path / f"edits_{name}").mkdir()
        for item in items:
            random_image(rng, 26, 26).save(tmp_path / f"edits_{name}" / f"{item.id}.png")
    mb = evaluate_metrics(tmp_path / "edits_mb", tmp_path / "mb.jsonl", tmp_path / "out_mb", **encoders)
    assert mb["protocols"] == ["magicbrush", "emu-edit"] and mb["overall"]["magicbrush"]["clip_t"]["n"] == 3
    assert set(mb["per_category"]) == {"turn1", "turn2"}
    final = evaluate_metrics(tmp_path / "edits_mb", tmp_path / "mb.jsonl", tmp_path / "fin", turns="final", **encoders)
    assert final["coverage"]["expected"] == 2  # 139_2 and 30_1: MagicBrush's multi-turn setting
    emu = evaluate_metrics(tmp_path / "edits_emu", tmp_path / "emu.jsonl", tmp_path / "out_emu", **encoders)
    assert emu["protocols"] == ["emu-edit"] and emu["overall"]["emu-edit"]["clip_dir"]["n"] == 4
    assert emu["coverage"]["identical_captions"] == 1 and len(emu["per_category"]) == 4
    with pytest.raises(ValueError, match="no ground-truth targets"):
        evaluate_metrics(
            tmp_path / "edits_emu", tmp_path / "emu.jsonl", tmp_path / "x", protocol="magicbrush", **encoders
        )
