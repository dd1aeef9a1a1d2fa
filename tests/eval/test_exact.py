"""The exact, judge-free metrics: region distances on known images, the copy-the-source reference and the paired
differences on synthetic test shards."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mredit.eval.exact import COPY_SOURCE, evaluate_exact, paired_difference, region_distances
from mredit.judge.benchmark import load_benchmark
from mredit.lab.workflow import exact_metrics
from mredit.synth.corruptions import Corruption, EditContext, apply_corruption
from mredit.synth.generate import write_synth_shards
from mredit.synth.oracle import parse_meta
from mredit.synth.scene import to_uint8


def test_region_distances_on_known_images():
    source = np.zeros((4, 4, 3), np.uint8)
    target = source.copy()
    target[:2, :2] = 255  # the edit region: 4 of 16 pixels
    edit = target.copy()
    edit[:2, :2, 0] = 0  # one channel of the region wrong: 1/3 inside
    edit[3, 3] = 51  # one pixel outside off by 0.2 in every channel: 0.2 / 12 outside
    distances = region_distances(edit, source, target)
    assert distances["inside"] == pytest.approx(1 / 3)
    assert distances["outside"] == pytest.approx(0.2 / 12)
    assert distances["whole"] == pytest.approx((4 / 3 + 0.2) / 16)
    assert region_distances(source, source, source) == {"inside": None, "outside": 0.0, "whole": 0.0}
    assert region_distances(target, source, target) == {"inside": 0.0, "outside": 0.0, "whole": 0.0}
    with pytest.raises(ValueError, match="differ in size"):
        region_distances(edit[:2], source, target)


def test_paired_difference_interval():
    rng = np.random.default_rng(0)
    better = {f"k{i}": 0.1 + 0.01 * (i % 3) for i in range(30)}
    worse = {k: v + 0.05 for k, v in better.items()}
    diff = paired_difference(worse, better, rng)
    assert diff["mean"] == pytest.approx(0.05) and diff["n"] == 30 and diff["excludes_zero"]
    assert diff["ci"][0] == pytest.approx(0.05) and diff["ci"][1] == pytest.approx(0.05)  # every item differs by 0.05
    noisy = {k: v + (0.05 if i % 2 else -0.05) for i, (k, v) in enumerate(better.items())}
    assert not paired_difference(noisy, better, rng)["excludes_zero"]
    assert paired_difference({"a": 1.0, "b": None}, {"a": 0.5}, rng)["n"] == 1  # only shared values count


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    """14 clean synthetic test items at 16 px and three editions: the exact answers, the answers with a stamp
    (a flaw outside most edit regions) and the answers at half size (resized back by the metrics)."""
    root = tmp_path_factory.mktemp("exact")
    write_synth_shards(root / "test", "test", 14, resolution=16, seed=5)
    items = load_benchmark(str(root / "test"))
    for name in ("answer", "stamped", "small"):
        (root / name).mkdir()
    for item in items:
        target = item.load_target()
        target.save(root / "answer" / f"{item.id}.png")
        target.resize((8, 8), Image.Resampling.NEAREST).save(root / "small" / f"{item.id}.png")
        ctx = EditContext.build(*parse_meta(item.meta))
        stamped = apply_corruption(ctx.answer, Corruption("stamp", 1.0, 0), ctx)
        Image.fromarray(to_uint8(stamped)).save(root / "stamped" / f"{item.id}.png")
    (root / "stamped" / f"{items[0].id}.png").unlink()  # a missing edit is left out, not counted as 0
    return root, items


def test_evaluate_exact_on_synthetic_test_shards(test_set):
    root, items = test_set
    editions = {name: root / name for name in ("answer", "stamped", "small")}
    pairs = [("stamped", "answer"), (COPY_SOURCE, "answer"), ("answer", "stamped")]
    results = evaluate_exact(editions, str(root / "test"), pairs, seed=0)
    models = results["models"]
    assert set(models) == {"answer", "stamped", "small", COPY_SOURCE}
    exact = models["answer"]["overall"]
    assert all(exact[r]["mean"] == 0.0 and exact[r]["ci"] == [0.0, 0.0] for r in ("inside", "outside", "whole"))
    assert exact["whole"]["n"] == 14 and exact["inside"]["n"] == 14  # every test edit changes something
    copy = models[COPY_SOURCE]["overall"]
    assert copy["outside"]["mean"] == 0.0 and copy["inside"]["mean"] > 0.1  # the size of the edits
    assert copy["whole"]["mean"] < copy["inside"]["mean"]
    assert models["stamped"]["n"] == 13 and models["stamped"]["left_out"] == [items[0].id]
    assert models["stamped"]["overall"]["whole"]["mean"] > 0.0
    assert set(models["answer"]["per_category"]) == {item.category for item in items}
    assert models["small"]["overall"]["whole"]["mean"] > 0.0  # resized back: detail lost, still measured
    differences = results["differences"]
    assert set(differences) == {"stamped - answer", "copy_source - answer", "answer - stamped"}
    gap = differences["copy_source - answer"]["overall"]["inside"]
    assert gap["mean"] == pytest.approx(copy["inside"]["mean"]) and gap["excludes_zero"] and gap["n"] == 14
    stamp = differences["stamped - answer"]["overall"]["whole"]
    assert stamp["n"] == 13 and stamp["mean"] > 0 and stamp["excludes_zero"]
    assert differences["answer - stamped"]["overall"]["whole"]["mean"] == pytest.approx(-stamp["mean"])
    assert evaluate_exact(editions, str(root / "test"), pairs, seed=0) == results  # seeded: deterministic


def test_evaluate_exact_errors(test_set, tmp_path):
    root, _ = test_set
    with pytest.raises(FileNotFoundError, match="edits directory not found"):
        evaluate_exact({"x": tmp_path / "missing"}, str(root / "test"))
    with pytest.raises(ValueError, match="unknown editions"):
        evaluate_exact({"answer": root / "answer"}, str(root / "test"), [("answer", "other")])


def test_the_experiment_runners_row_of_exact_metrics(test_set):
    """``mredit.lab.workflow.exact_metrics``, what ``python -m mredit.lab.experiments`` aggregates over seeds."""
    root, _ = test_set
    row = exact_metrics(root / "answer", root / "test")
    copy = evaluate_exact({}, str(root / "test"))["models"][COPY_SOURCE]["overall"]
    assert {row[r] for r in ("inside", "outside", "whole")} == {0.0}
    assert all(row[f"copy_source_{r}"] == copy[r]["mean"] for r in ("inside", "outside", "whole"))
