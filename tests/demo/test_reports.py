import numpy as np
import pytest
from PIL import Image

from mredit.lab.reports import (
    format_aggregate_table,
    format_category_table,
    format_exact_category_table,
    format_exact_table,
    format_overall_table,
    format_paired_differences,
    replace_between_markers,
    save_comparison_grid,
    save_exact_bars,
    save_metric_bars,
)


def _metrics(yes, score, ci=False):
    entry = {"yes_rate": yes, "score": score}
    if ci:
        entry |= {"yes_rate_ci": [yes - 0.1, yes + 0.1], "score_ci": [score - 0.2, score + 0.2]}
    return {p: dict(entry) for p in ("following", "preserving", "quality")}


def test_overall_table_rows_and_units():
    table = format_overall_table({"baseline": _metrics(0.25, 3.5), "reward": _metrics(0.5, 4.25)})
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].count("|") == 8
    assert lines[2].startswith("| baseline | 25.0 | 3.50 |") and lines[3].startswith("| reward | 50.0 | 4.25 |")


def test_category_table_groups_by_category():
    table = format_category_table(
        {"baseline": {"local": _metrics(0.0, 1.0), "add": _metrics(1.0, 5.0)}, "reward": {"local": _metrics(0.5, 2)}}
    )
    rows = table.splitlines()[2:]
    assert [r.split(" | ")[:2] for r in rows] == [["| local", "baseline"], ["| local", "reward"], ["| add", "baseline"]]


def test_aggregate_table_shows_mean_and_half_width():
    entry = {"mean": 0.5, "ci": [0.4, 0.6], "n": 3}
    aggregate = {
        "reward": {
            p: {"yes_rate": entry, "score": {"mean": 4.0, "ci": None, "n": 1}}
            for p in ("following", "preserving", "quality")
        }
    }
    row = format_aggregate_table(aggregate).splitlines()[2]
    assert row.startswith("| reward | 3 | 50.0 ± 10.0 | 4.00 |")


def test_markers_replace_in_place_or_append():
    text = "# x\n\nbefore\n<!-- results:start -->\nold\n<!-- results:end -->\nafter\n"
    updated = replace_between_markers(text, "new table")
    assert "old" not in updated and "new table" in updated and updated.endswith("after\n")
    assert replace_between_markers(updated, "newer").count("results:start") == 1
    appended = replace_between_markers("# y\n", "t")
    assert appended == "# y\n\n<!-- results:start -->\nt\n<!-- results:end -->\n"


def test_grid_and_bars_are_written(tmp_path):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in range(4)]
    grid = save_comparison_grid(
        [("local: make it red", images), ("add: add a dot", images)], "abcd", tmp_path / "g.png", cell_size=32
    )
    with Image.open(grid) as image:
        assert image.size[0] == 4 * 36 + 4 and image.size[1] > 2 * 32
    bars = save_metric_bars({"baseline": _metrics(0.2, 3.0, ci=True), "reward": _metrics(0.4, 4.0)}, tmp_path / "b.png")
    assert bars.stat().st_size > 1000
    with pytest.raises(ValueError, match="expected 4"):
        save_comparison_grid([("x", images[:3])], "abcd", tmp_path / "bad.png")


def _regions(inside, outside, ci=True):
    def entry(mean):
        return {"mean": mean, "ci": [mean - 0.01, mean + 0.01] if ci else None, "n": 14}

    return {"inside": entry(inside), "outside": entry(outside), "whole": entry((inside + outside) / 2)}


def test_exact_tables_and_chart(tmp_path):
    models = {"baseline": _regions(0.2, 0.05), "copy the source": _regions(0.3, 0.0, ci=False)}
    lines = format_exact_table(models).splitlines()
    assert lines[0] == "| model | n | L1 inside the edit | L1 outside it | L1 whole image |"
    assert lines[2] == "| baseline | 14 | 0.2000 [0.1900, 0.2100] | 0.0500 [0.0400, 0.0600] | 0.1250 [0.1150, 0.1350] |"
    assert lines[3] == "| copy the source | 14 | 0.3000 | 0.0000 | 0.1500 |"
    per_category = format_exact_category_table(
        {"baseline": {"local": _regions(0.2, 0.05), "add": _regions(0.1, 0.0)}, "reward": {"local": _regions(0.1, 0)}}
    )
    rows = per_category.splitlines()[2:]
    assert rows == ["| local | 0.200 / 0.050 | 0.100 / 0.000 |", "| add | 0.100 / 0.000 | – / – |"]
    chart = save_exact_bars(models, tmp_path / "exact.png", title="t")
    assert chart.stat().st_size > 1000


def test_paired_differences_say_whether_the_interval_excludes_zero():
    rows = [
        ("following yes %", {"mean": 0.05, "ci": [0.01, 0.09], "n": 140, "excludes_zero": True}, 100.0, 1),
        ("exact L1 inside", {"mean": -0.002, "ci": [-0.01, 0.006], "n": 140, "excludes_zero": False}, 1.0, 4),
        ("empty", {"mean": None, "ci": None, "n": 0, "excludes_zero": False}, 1.0, 4),
    ]
    lines = format_paired_differences(rows).splitlines()
    assert lines[2] == "| following yes % | 5.0 [1.0, 9.0] | 140 | yes |"
    assert lines[3] == "| exact L1 inside | -0.0020 [-0.0100, 0.0060] | 140 | no |"
    assert lines[4] == "| empty | – | 0 | – |"
