"""prepare_data: the synthetic train/test sets an experiment trains and evaluates on, cached per spec."""

import json
from dataclasses import asdict

from mredit import workflow
from mredit.data.shards import read_manifest
from mredit.workflow import DataSpec


def test_categories_reach_both_splits_and_name_a_new_cache(tmp_path):
    spec = DataSpec(num_train=12, num_test=6, resolution=16, categories=("local", "add"))
    paths = workflow.prepare_data(tmp_path / "data", spec, log=lambda *_: None)
    assert set(read_manifest(paths.test)["categories"]) == {"local", "add"}
    assert read_manifest(paths.train)["reward_coverage"]["fraction"] == 1.0
    assert set(read_manifest(tmp_path / "data" / "train_raw")["categories"]) <= {"local", "add"}
    marker = json.loads((tmp_path / "data" / workflow.DONE_MARKER).read_text())
    assert marker["categories"] == ["local", "add"]


def test_a_cache_made_before_categories_existed_is_reused(tmp_path):
    spec = DataSpec(num_train=12, num_test=6, resolution=16)
    old_settings = {k: v for k, v in asdict(spec).items() if k != "categories"}
    (tmp_path / workflow.DONE_MARKER).write_text(json.dumps(old_settings))
    messages = []
    workflow.prepare_data(tmp_path, spec, log=messages.append)
    assert messages == [f"data: reusing {tmp_path}"]
