import numpy as np
import pytest
from PIL import Image

from mredit.lab.reports import (
    format_aggregate_table,
    format_category_table,
    format_overall_table,
    replace_between_markers,
    save_comparison_grid,
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
