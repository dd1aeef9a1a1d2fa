"""prepare_data: the synthetic train/test sets an experiment trains and evaluates on, cached per spec."""

import json
from dataclasses import asdict

import pytest

from mredit.data.shards import read_manifest
from mredit.lab import sharing, workflow
from mredit.lab.workflow import DataSpec


def test_categories_reach_both_splits_and_name_a_new_cache(tmp_path):
    spec = DataSpec(num_train=12, num_test=6, resolution=16, categories=("local", "add"))
    paths = workflow.prepare_data(tmp_path / "data", spec, log=lambda *_: None)
    assert set(read_manifest(paths.test)["categories"]) == {"local", "add"}
    assert read_manifest(paths.train)["reward_coverage"]["fraction"] == 1.0
    assert set(read_manifest(tmp_path / "data" / "train_raw")["categories"]) <= {"local", "add"}
    marker = json.loads((tmp_path / "data" / workflow.DONE_MARKER).read_text())
    assert marker["categories"] == ["local", "add"]


def test_each_step_writes_its_json_summary_to_its_log(tmp_path):
    spec = DataSpec(num_train=12, num_test=7, resolution=16)
    workflow.prepare_data(tmp_path, spec, log=lambda *_: None)
    logs = tmp_path / "logs"
    decoder = json.JSONDecoder()
    assert decoder.decode((logs / "synth_train.log").read_text())["num_samples"] == 12
    assert decoder.decode((logs / "synth_test.log").read_text())["corrupted"] == 0  # the test split is clean
    annotated = decoder.decode((logs / "annotate.log").read_text())
    assert annotated["inputs"] == 12 and annotated["final"] == {"ok": 12}
    joined = decoder.decode((logs / "convert.log").read_text())
    assert joined["reward_coverage"]["with_reward"] == 12 and joined["out"] == str(tmp_path / "train")
    records = [json.loads(line) for line in (tmp_path / "annotations" / "annotations.jsonl").open()]
    assert {r["fingerprint"]["provider"] for r in records} == {"oracle"}


def test_a_cache_made_before_categories_existed_is_reused(tmp_path):
    spec = DataSpec(num_train=12, num_test=6, resolution=16)
    old_settings = {k: v for k, v in asdict(spec).items() if k not in ("categories", "flaw_model")}
    (tmp_path / workflow.DONE_MARKER).write_text(json.dumps(old_settings))
    messages = []
    workflow.prepare_data(tmp_path, spec, log=messages.append)
    assert messages == [f"data: reusing {tmp_path}"]


def test_the_same_data_in_a_sibling_work_folder_is_copied_not_made_again(tmp_path, monkeypatch):
    spec = DataSpec(num_train=12, num_test=6, resolution=16)
    made = workflow.prepare_data(tmp_path / "first" / "data" / "d", spec, log=lambda *_: None)

    def no_synthesis(out_dir, *args, **kwargs):
        raise AssertionError(f"made the data again: {out_dir}")

    monkeypatch.setattr(workflow, "write_synth_shards", no_synthesis)
    messages = []
    assert sharing.copy_identical_data(tmp_path / "second" / "data" / "d", spec, tmp_path, log=messages.append)
    copy = workflow.prepare_data(tmp_path / "second" / "data" / "d", spec, log=lambda *_: None)
    assert messages == [f"data: copying the same data from {tmp_path / 'first' / 'data' / 'd'}"]
    assert read_manifest(copy.train) == read_manifest(made.train)
    shard = next(made.train.glob("*.tar"))
    assert not (copy.train / shard.name).samefile(shard)  # a copy: rewriting one cannot change the other
    assert workflow.prepare_data(copy.train.parent, spec, log=messages.append) == copy  # now its own cache
    assert messages[-1] == f"data: reusing {copy.train.parent}"
    other = DataSpec(num_train=13, num_test=6)
    assert not sharing.copy_identical_data(tmp_path / "third", other, tmp_path)
    with pytest.raises(AssertionError, match="made the data again"):  # other settings: nothing to share
        workflow.prepare_data(tmp_path / "third", other)
