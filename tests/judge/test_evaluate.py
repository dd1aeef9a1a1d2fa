"""Real-Edit-style evaluation: benchmark formats, the converter, aggregation, report, resume, CLI."""

from __future__ import annotations

import json
import random

import pytest
from fake_server import expected_scores
from judge_helpers import API_KEY, tiny_image, write_corrupt_tar, write_shards, write_truncated_tar

from mredit.cli import main
from mredit.judge.benchmark import convert_real_edit, load_benchmark, normalise_category, parse_real_edit_entry
from mredit.judge.evaluate import bootstrap_ci, evaluate_edits

INSTRUCTIONS = {
    "a1": ("local", "make the car red"),
    "a2": ("local", "make the door blue"),
    "b1": ("style", "render it as a watercolor"),
    "b2": ("style", "in the style of: van gogh"),
    "b3": ("style", "oil painting #fault=refusal"),
}


def _benchmark(tmp_path, with_edits=("a1", "a2", "b1", "b3")):
    rng = random.Random(1)
    (tmp_path / "images").mkdir()
    (tmp_path / "edits").mkdir()
    lines = []
    for item_id, (category, instruction) in INSTRUCTIONS.items():
        tiny_image(rng).save(tmp_path / "images" / f"{item_id}.png")
        lines.append(
            json.dumps(
                {"id": item_id, "image": f"images/{item_id}.png", "instruction": instruction, "category": category}
            )
        )
        if item_id in with_edits:
            tiny_image(rng).save(tmp_path / "edits" / f"{item_id}.png")
    (tmp_path / "bench.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "bench.jsonl"


def test_evaluate_combined_results_report_and_resume(tmp_path, fake_server, make_judge):
    bench = _benchmark(tmp_path)
    results = evaluate_edits(tmp_path / "edits", bench, make_judge(), tmp_path / "out", mode="combined")
    coverage = results["coverage"]
    assert coverage["expected"] == 5 and coverage["edits_found"] == 4 and coverage["judged"] == 3
    assert coverage["missing_edits"] == ["b2"] and coverage["statuses"] == {"ok": 3, "refused": 1}
    assert "b3" in coverage["failed"]
    ok_ids = ["a1", "a2", "b1"]
    scores = [expected_scores(INSTRUCTIONS[i][1])["following"] for i in ok_ids]
    following = results["overall"]["following"]
    assert following["n"] == 3 and following["score"] == pytest.approx(sum(scores) / 3)
    assert following["yes_rate"] == pytest.approx(sum(s >= 4 for s in scores) / 3)
    assert following["score_ci"][0] <= following["score"] <= following["score_ci"][1]
    assert (
        results["per_category"]["local"]["quality"]["n"] == 2 and results["per_category"]["style"]["quality"]["n"] == 1
    )
    assert json.loads((tmp_path / "out/results.json").read_text())["overall"] == results["overall"]
    report = (tmp_path / "out/report.md").read_text()
    assert "b2" in report and "thumbnails.png" in report and (tmp_path / "out/thumbnails.png").is_file()

    before = fake_server.chat_requests
    again = evaluate_edits(tmp_path / "edits", bench, make_judge(), tmp_path / "out", mode="combined")
    assert fake_server.chat_requests == before and again["overall"] == results["overall"]
    tiny_image(random.Random(9)).save(tmp_path / "edits" / "a1.png")  # a new edit is judged again, not reused
    evaluate_edits(tmp_path / "edits", bench, make_judge(), tmp_path / "out", mode="combined")
    assert fake_server.chat_requests == before + 1


def test_evaluate_paper_mode_makes_three_calls_per_edit(tmp_path, fake_server, make_judge):
    bench = _benchmark(tmp_path, with_edits=("a1", "b1"))
    results = evaluate_edits(tmp_path / "edits", bench, make_judge(mode="paper"), tmp_path / "out", mode="paper")
    assert fake_server.chat_requests == 6 and results["judge"]["mode"] == "paper"
    assert results["overall"]["preserving"]["score"] == pytest.approx(
        sum(expected_scores(INSTRUCTIONS[i][1])["preserving"] for i in ("a1", "b1")) / 2
    )


def test_shards_as_benchmark(tmp_path, fake_server, make_judge):
    shards = write_shards(tmp_path / "shards", ["make it red", "add a sun"], categories=["local", "add"])
    items = load_benchmark(str(shards))
    assert [(i.id, i.category, i.meta) for i in items] == [
        ("s000", "local", {"category": "local"}),
        ("s001", "add", {"category": "add"}),
    ]
    (tmp_path / "edits").mkdir()
    tiny_image(random.Random(0)).save(tmp_path / "edits/s000.png")
    bad = write_corrupt_tar(tmp_path / "bad.tar")
    cut = write_truncated_tar(tmp_path / "cut.tar", shards / "shard-000000.tar")
    results = evaluate_edits(tmp_path / "edits", [str(shards), str(bad), str(cut)], make_judge(), tmp_path / "out")
    assert results["coverage"]["skipped"] == {"unreadable_shard": 1}
    assert "Unreadable benchmark shards skipped" in (tmp_path / "out/report.md").read_text()
    assert results["coverage"]["missing_edits"] == ["s001"]
    assert set(results["per_category"]) == {"local", "add", "uncategorised"}
    assert results["coverage"]["statuses"] == {"ok": 1, "invalid": 1} and "broken" in results["coverage"]["failed"]


def test_bootstrap_is_seeded_and_handles_empty():
    import numpy as np

    values = np.array([1.0, 2.0, 5.0, 4.0])
    assert bootstrap_ci(values, np.random.default_rng(3)) == bootstrap_ci(values, np.random.default_rng(3))
    assert bootstrap_ci(np.array([]), np.random.default_rng(0)) is None


def test_real_edit_converter(tmp_path):
    (tmp_path / "imgs").mkdir()
    tiny_image(random.Random(0)).save(tmp_path / "imgs/photo.1.jpg")
    entries = [
        "Local. Color: make the car red",
        "Remove. Object: remove the lamp: the one on the left",
        "Add. Object: add a cat",
        "Texture. Material: make the table marble",
        "Background. Scene: put it on a beach",
        "Global. Season: make it winter",
        "Style. Art: van gogh style",
    ]
    (tmp_path / "real_edit_instruct.json").write_text(json.dumps({"photo.1.jpg": entries}))
    summary = convert_real_edit(tmp_path / "real_edit_instruct.json", tmp_path / "imgs", tmp_path / "bench/real.jsonl")
    assert summary["items"] == 7 and all(v == 1 for v in summary["per_category"].values())
    items = load_benchmark(tmp_path / "bench/real.jsonl")
    assert items[1].instruction == "remove the lamp: the one on the left" and items[1].category == "remove"
    assert items[0].id == "photo_1_0_local" and items[0].load_image().size == (16, 16)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        (tmp_path / "bad.json").write_text(json.dumps({"missing.jpg": entries}))
        convert_real_edit(tmp_path / "bad.json", tmp_path / "imgs", tmp_path / "x.jsonl")


def test_category_parsing():
    assert normalise_category("Background change") == "background" and normalise_category("removal") == "remove"
    assert parse_real_edit_entry("7. Stylize: paint it: boldly", 6) == ("style", "paint it: boldly")
    with pytest.raises(ValueError, match="unknown Real-Edit category"):
        normalise_category("zoom")


def test_eval_cli(tmp_path, fake_server, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_server.base_url)
    bench = _benchmark(tmp_path)
    code = main(
        [
            "judge",
            "eval",
            "--edits",
            str(tmp_path / "edits"),
            "--benchmark",
            str(bench),
            "--out",
            str(tmp_path / "out"),
            "--mode",
            "combined",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["coverage"]["judged"] == 3
    assert (
        main(
            [
                "judge",
                "eval",
                "--edits",
                str(tmp_path / "nope"),
                "--benchmark",
                str(bench),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )
    assert "edits directory not found" in capsys.readouterr().err


def test_oracle_judge_annotates_and_evaluates_synthetic_shards(tmp_path):
    pytest.importorskip("mredit.synth.oracle")
    from mredit.data.reader import read_samples
    from mredit.judge.annotate import annotate
    from mredit.judge.records import read_records
    from mredit.judge.registry import build_judge
    from mredit.synth.generate import write_synth_shards

    write_synth_shards(tmp_path / "test", "test", 14, resolution=16)
    summary = annotate([str(tmp_path / "test")], tmp_path / "ann", build_judge("oracle"))
    assert summary["final"] == {"ok": 14}
    (tmp_path / "edits").mkdir()
    for sample in read_samples(tmp_path / "test"):  # the exact answers as "model edits"
        sample.target.save(tmp_path / "edits" / f"{sample.key}.png")
    results = evaluate_edits(tmp_path / "edits", str(tmp_path / "test"), build_judge("oracle"), tmp_path / "out")
    assert results["coverage"]["judged"] == 14 and len(results["per_category"]) == 7
    annotated = [r["judgement"] for r in read_records(tmp_path / "ann/annotations.jsonl")[0]]
    for perspective in ("following", "preserving", "quality"):  # both paths see the same triplets
        mean = sum(j[perspective]["score"] for j in annotated) / len(annotated)
        assert results["overall"][perspective]["score"] == pytest.approx(mean)
    assert results["judge"]["provider"] == "oracle"
