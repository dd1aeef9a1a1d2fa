"""The experiment runner's orchestration and aggregation, with the expensive steps replaced by fakes."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import yaml

from mredit.cli.main import main as mredit_main
from mredit.lab import experiments, jobs, reports, workflow
from mredit.lab.experiments import aggregate, load_experiment, plan_experiment, run_experiment

REPO = Path(__file__).resolve().parents[2]
PERSPECTIVES = ("following", "preserving", "quality")


def _results(value):
    return {"overall": {p: {"yes_rate": value, "score": 5 * value} for p in PERSPECTIVES}, "per_category": {}}


def test_aggregate_means_intervals_and_paired_differences():
    runs = {
        "baseline": {0: _results(0.2), 1: _results(0.3), 2: _results(0.4)},
        "reward": {0: _results(0.5), 1: _results(0.5), 2: _results(0.8)},
    }
    summary = aggregate(runs, reference="baseline")
    following = summary["arms"]["reward"]["following"]["yes_rate"]
    assert following["mean"] == pytest.approx(0.6) and following["n"] == 3
    lo, hi = following["ci"]
    assert lo < 0.6 < hi
    difference = summary["differences"]["reward"]["quality"]["score"]
    assert difference["mean"] == pytest.approx(5 * (0.6 - 0.3)) and "baseline" not in summary["differences"]


def test_per_category_means_over_seeds():
    def run(local, background):
        result = _results(0.5)
        result["per_category"] = {
            c: {p: {"yes_rate": v, "score": 5 * v} for p in PERSPECTIVES}
            for c, v in (("local", local), ("background", background))
        }
        return result

    runs = {"baseline": {0: run(0.0, 0.5), 1: run(0.1, 0.7)}, "reward": {0: run(0.2, 0.9), 1: run(0.4, 0.9)}}
    means = aggregate(runs, reference="baseline")["per_category"]
    assert means["reward"]["local"]["following"]["yes_rate"] == pytest.approx(0.3)
    assert means["baseline"]["background"]["preserving"]["score"] == pytest.approx(3.0)
    table = reports.format_category_means_table(means).splitlines()
    assert table[0] == "| category | baseline | reward |"
    assert table[2:] == ["| background | 60.0 | 90.0 |", "| local | 5.0 | 30.0 |"]


def _write_experiment(directory: Path, **extra) -> Path:
    config = {
        "name": "toy",
        "hypothesis": "reward beats baseline",
        "seeds": [0, 1],
        "reference": "baseline",
        "data": {"num_train": 8, "num_test": 7, "resolution": 16},
        "train": {"max_steps": 2, "batch_size": 4},
        "arms": [
            {"name": "baseline", "configs": ["configs/ip2p_tiny.yaml"]},
            {"name": "reward", "configs": ["configs/ip2p_tiny.yaml"], "reward": {"variant": "paper"}},
            {
                "name": "reward_scale_2",
                "configs": ["configs/ip2p_tiny.yaml"],
                "reuse": "reward",
                "edit": {"reward_guidance_scale": 2.0},
            },
        ],
        **extra,
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    (directory / "README.md").write_text("# toy\n\n<!-- results:start -->\nnothing yet\n<!-- results:end -->\n")
    return directory


class FakeWorkflow:
    """Records what the runner asks for; 'training' writes the checkpoint, 'editing' nothing, eval a score."""

    def __init__(self, monkeypatch, mark_data_done: bool = False):
        self.data_specs, self.data_dirs, self.jobs, self.edits, self.evaluated = [], [], [], [], []
        self.measured = []
        self.mark_data_done = mark_data_done  # the real prepare_data's done marker (what shared runs compare)
        monkeypatch.setattr(workflow, "prepare_data", self.prepare_data)
        monkeypatch.setattr(jobs, "run_jobs", self.run_jobs)
        monkeypatch.setattr(workflow, "evaluate", self.evaluate)
        monkeypatch.setattr(workflow, "measure", self.measure)
        monkeypatch.setattr(workflow, "exact_metrics", self.exact_metrics)
        for library_step in ("write_synth_shards", "annotate", "convert", "evaluate_edits", "evaluate_metrics"):
            monkeypatch.setattr(workflow, library_step, self.library_step)

    def prepare_data(self, out_dir, spec, log=print):
        self.data_specs.append(spec)
        self.data_dirs.append(Path(out_dir).name)
        if self.mark_data_done:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / workflow.DONE_MARKER).write_text(json.dumps(dataclasses.asdict(spec)))
        return workflow.DataPaths(train=Path(out_dir) / "train", test=Path(out_dir) / "test")

    def run_jobs(self, jobs, max_parallel=2):
        for job in jobs:
            if job.name.startswith("edit "):
                self.edit(job)
                continue
            self.jobs.append(job)
            monitor = json.loads(next(a for a in job.argv if "TrainingMonitor" in a).split("+=", 1)[1])["init_args"]
            ckpt = Path(monitor["checkpoint_path"])
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            ckpt.write_text(f"weights of {job.name}")  # in place, as Lightning's save_checkpoint writes
            for step in monitor.get("save_at_steps", []):
                ckpt.with_name(f"step{step}.ckpt").write_text(f"weights of {job.name}")

    def edit(self, job):
        argv = job.argv[job.argv.index("edit") :]
        options = dict(zip(argv[1::2], argv[2::2]))
        assert Path(options["--model"]).exists()  # trained before editing
        self.edits.append(options)
        Path(options["--out_dir"]).mkdir(parents=True, exist_ok=True)
        job.on_success()

    def library_step(self, *args, **kwargs):
        raise AssertionError(f"the runner called the library: {args}")  # data and evaluation are faked

    def evaluate(self, edits_dir, test_shards, out_dir):
        self.evaluated.append(Path(edits_dir))
        parts = Path(edits_dir).parts
        at = next(i for i, part in enumerate(parts) if part.startswith("seed"))  # .../<arm>/seed<s>[/curve/step<n>]
        arm, seed = parts[at - 1], int(parts[at].removeprefix("seed"))
        value = {"baseline": 0.2, "reward": 0.5, "reward_scale_2": 0.6}.get(arm, 0.3) + 0.01 * seed
        if "curve" in parts:  # an earlier checkpoint scores lower
            value -= 0.1
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "results.json").write_text(json.dumps(_results(value)))
        return _results(value)

    def exact_metrics(self, edits_dir, test_shards):
        """Inside the edit region 0.3 (baseline) or 0.2 (reward arms) plus 0.01 per seed; copying the source 0.4."""
        parts = Path(edits_dir).parts
        at = next(i for i, part in enumerate(parts) if part.startswith("seed"))
        value = (0.3 if parts[at - 1] == "baseline" else 0.2) + 0.01 * int(parts[at].removeprefix("seed"))
        row = {"inside": value, "outside": value / 10, "whole": value / 2}
        return {**row, **{f"copy_source_{region}": 0.4 for region in row}}

    def measure(self, edits_dir, test_shards, out_dir, models, reuse=False):
        """The MagicBrush metrics: L1 0.1 (baseline) or 0.05 (reward arms), plus 0.01 per seed; cached like the real
        step (a re-edit deletes the result)."""
        done = Path(out_dir) / "results.json"
        if reuse and done.exists():
            return json.loads(done.read_text())
        self.measured.append(Path(edits_dir))
        parts = Path(edits_dir).parts
        at = next(i for i, part in enumerate(parts) if part.startswith("seed"))
        value = (0.1 if parts[at - 1] == "baseline" else 0.05) + 0.01 * int(parts[at].removeprefix("seed"))
        entry = lambda v: {"mean": v, "ci": [v - 0.01, v + 0.01], "n": 7}  # noqa: E731
        overall = {"l1": entry(value), "l2": entry(value / 10), "clip_t": {"mean": None, "ci": None, "n": 0}}
        result = {"overall": {"magicbrush": overall}, "models": models.names, "note": models.note}
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps(result))
        return result


def test_runner_trains_each_arm_once_per_seed_and_writes_results(tmp_path, monkeypatch):
    fake = FakeWorkflow(monkeypatch)
    experiment = load_experiment(_write_experiment(tmp_path / "exp"))
    payload = run_experiment(experiment, tmp_path / "work", log=lambda *_: None)

    trains = fake.jobs
    assert sorted(j.name for j in trains) == [
        "train baseline/seed0",
        "train baseline/seed1",
        "train reward/seed0",
        "train reward/seed1",
    ]
    assert len(fake.edits) == 6 and len(fake.evaluated) == 6
    reuse = next(e for e in fake.edits if "reward_scale_2/seed1" in e["--out_dir"])
    assert reuse["--model"] == str(tmp_path / "work/runs/reward/seed1/final.ckpt")  # the reused arm's model
    assert reuse["--reward_guidance_scale"] == "2.0" and reuse["--scores"] == "[5, 5, 5]"
    assert reuse["--resolution"] == "16" and reuse["--use_ema"] == "true"
    reward_train = next(j for j in trains if j.name == "train reward/seed1")
    assert "--seed_everything=1" in reward_train.argv and "--trainer.max_steps=2" in reward_train.argv
    assert any("RewardConditioning" in a and '"variant": "paper"' in a for a in reward_train.argv)
    baseline_train = next(j for j in trains if j.name == "train baseline/seed0")
    assert not any("RewardConditioning" in a for a in baseline_train.argv)
    assert [s.seed for s in fake.data_specs] == [0, 1]  # seed s draws its data with data.seed + s, made once

    assert payload["arms"]["reward"]["following"]["yes_rate"]["mean"] == pytest.approx(0.505)
    assert payload["differences"]["reward"]["following"]["yes_rate"]["mean"] == pytest.approx(0.3)
    assert json.loads((tmp_path / "exp" / "results.json").read_text())["runs"]["baseline"]["1"]
    readme = (tmp_path / "exp" / "README.md").read_text()
    assert "nothing yet" not in readme and "| reward | 2 | 50.5 ± " in readme and "Paired differences" in readme
    # the MagicBrush metrics of the final models, over seeds, with the wiring-check note of the tiny models
    assert len(fake.measured) == 6 and payload["metrics"]["baseline"]["l1"]["mean"] == pytest.approx(0.105)
    assert set(payload["metrics"]["reward"]) == {"l1", "l2"} and "wiring check" in payload["metrics_note"]
    assert "| baseline | 2 | 0.1050 ± " in readme and "MagicBrush metrics against the exact targets" in readme
    # the exact metrics: per arm over seeds, copying the source, and the paired differences to the reference
    exact = payload["exact"]
    assert exact["arms"]["baseline"]["inside"]["mean"] == pytest.approx(0.305)
    assert exact["arms"]["copy_source"]["whole"]["mean"] == pytest.approx(0.4)
    assert exact["differences"]["reward"]["inside"]["mean"] == pytest.approx(-0.1)
    assert exact["differences"]["reward"]["inside"]["ci"] == pytest.approx([-0.1, -0.1])
    assert "| copy_source | 2 | 0.4000 ± 0.0000 |" in readme and "Exact metrics, paired differences" in readme

    fake.jobs.clear(), fake.edits.clear(), fake.evaluated.clear(), fake.measured.clear()
    run_experiment(experiment, tmp_path / "work", log=lambda *_: None)  # everything cached: nothing re-runs
    assert fake.jobs == [] and fake.edits == [] and fake.evaluated == [] and fake.measured == []

    experiment.train["max_steps"] = 3  # a changed command line retrains, re-edits, re-judges and re-measures
    run_experiment(experiment, tmp_path / "work", log=lambda *_: None)
    assert len(fake.jobs) == 4 and len(fake.edits) == 6 and len(fake.evaluated) == 6 and len(fake.measured) == 6


def test_checkpoint_steps_add_a_learning_curve(tmp_path, monkeypatch):
    fake = FakeWorkflow(monkeypatch)
    exp = _write_experiment(tmp_path / "exp", train={"max_steps": 4, "batch_size": 4, "checkpoint_steps": [2]})
    payload = run_experiment(load_experiment(exp), tmp_path / "work", log=lambda *_: None)
    assert len(fake.jobs) == 4 and len(fake.edits) == 12 and len(fake.evaluated) == 12
    early = next(e for e in fake.edits if e["--out_dir"].endswith("reward_scale_2/seed1/curve/step2/edits"))
    assert early["--model"] == str(tmp_path / "work/runs/reward/seed1/step2.ckpt")
    assert payload["arms"]["reward"]["following"]["yes_rate"]["mean"] == pytest.approx(0.505)  # the final models
    assert sorted(payload["curve"]) == [2, 4]
    assert payload["curve"][2]["arms"]["reward"]["following"]["yes_rate"]["mean"] == pytest.approx(0.405)
    assert "Learning curve" in (exp / "README.md").read_text()
    fake.edits.clear()
    run_experiment(load_experiment(exp), tmp_path / "work", log=lambda *_: None)
    assert fake.jobs[4:] == [] and fake.edits == []  # cached, curve included


def test_final_only_skips_the_curve_until_a_later_run(tmp_path, monkeypatch):
    fake = FakeWorkflow(monkeypatch)
    exp = _write_experiment(tmp_path / "exp", train={"max_steps": 4, "batch_size": 4, "checkpoint_steps": [2]})
    payload = run_experiment(load_experiment(exp), tmp_path / "work", log=lambda *_: None, final_only=True)
    assert len(fake.jobs) == 4 and len(fake.edits) == 6 and "curve" not in payload
    assert all("/curve/" not in e["--out_dir"] for e in fake.edits)
    assert "Learning curve" not in (exp / "README.md").read_text()
    fake.edits.clear()
    payload = run_experiment(load_experiment(exp), tmp_path / "work", log=lambda *_: None)
    assert len(fake.jobs) == 4 and len(fake.edits) == 6  # no retraining; only the curve points are new
    assert all("/curve/step2/" in e["--out_dir"] for e in fake.edits) and sorted(payload["curve"]) == [2, 4]
    fake.edits.clear()
    payload = run_experiment(load_experiment(exp), tmp_path / "work", log=lambda *_: None, final_only=True)
    assert fake.edits == [] and sorted(payload["curve"]) == [2, 4]  # judged curve points are kept
    assert "Learning curve" in (exp / "README.md").read_text()


def test_the_results_block_names_the_command_that_made_it(tmp_path, monkeypatch):
    FakeWorkflow(monkeypatch)
    exp = _write_experiment(tmp_path / "exp")
    argv = ["--experiment", str(exp), "--out", str(tmp_path / "work"), "--seeds", "[1]"]
    assert experiments.main(argv) == 0
    readme = (exp / "README.md").read_text()
    made_by = f"python -m mredit.lab.experiments --experiment {exp} --out {tmp_path / 'work'} --seeds '[1]'"
    assert f"Made by `{made_by}`." in readme
    assert '"seeds": [1]' in readme


def test_an_arm_restricted_to_some_categories_gets_its_own_data(tmp_path, monkeypatch):
    fake = FakeWorkflow(monkeypatch)
    experiment = load_experiment(_write_experiment(tmp_path / "exp"))
    experiment.arms[1].data = {"categories": ["remove", "local"]}
    run_experiment(experiment, tmp_path / "work", log=lambda *_: None)
    assert fake.data_specs[1].categories == ("local", "remove")  # canonical order
    assert fake.data_dirs[:2] == ["n8_r16_c0.5_s0", "n8_r16_c0.5_s0_local-remove"]
    experiment.arms[1].data = {"categories": ["recolour"]}
    with pytest.raises(ValueError, match="categories must be some of"):
        run_experiment(experiment, tmp_path / "work", log=lambda *_: None)


def test_an_identical_run_of_another_experiment_is_shared_not_retrained(tmp_path, monkeypatch):
    fake = FakeWorkflow(monkeypatch, mark_data_done=True)
    first = load_experiment(_write_experiment(tmp_path / "first", train={"max_steps": 4, "checkpoint_steps": [2]}))
    run_experiment(first, tmp_path / "runs" / "first", log=lambda *_: None)
    assert len(fake.jobs) == 4
    shared_model = tmp_path / "runs/first/runs/reward/seed1/final.ckpt"
    shared_model.write_text("the first experiment's weights")

    second = load_experiment(_write_experiment(tmp_path / "second", train={"max_steps": 4, "checkpoint_steps": [2]}))
    second.arms[0].name = "plain"  # same training as first's baseline under another name
    second.arms[1].overrides = ["--model.init_args.learning_rate=0.002"]  # a different training
    second.arms[2].reuse = "plain"
    fake.jobs.clear(), fake.edits.clear()
    messages = []
    run_experiment(second, tmp_path / "runs" / "second", log=messages.append)
    assert sorted(j.name for j in fake.jobs) == ["train reward/seed0", "train reward/seed1"]
    assert sum("sharing the identical finished run" in m for m in messages) == 2
    plain = tmp_path / "runs/second/runs/plain/seed1"
    assert (plain / "final.ckpt").samefile(tmp_path / "runs/first/runs/baseline/seed1/final.ckpt")
    assert (plain / "step2.ckpt").exists()
    assert any(e["--model"] == str(plain / "final.ckpt") for e in fake.edits)
    fake.jobs.clear()
    run_experiment(second, tmp_path / "runs" / "second", log=lambda *_: None)  # now its own cached run
    assert fake.jobs == []
    second.arms[0].overrides = ["--model.init_args.ema_decay=0.99"]  # retrain plain: the shared files stay intact
    run_experiment(second, tmp_path / "runs" / "second", log=lambda *_: None)
    assert sorted(j.name for j in fake.jobs) == ["train plain/seed0", "train plain/seed1"]
    assert (plain / "step2.ckpt").read_text() == "weights of train plain/seed1"
    first_step = tmp_path / "runs/first/runs/baseline/seed1/step2.ckpt"
    assert first_step.read_text() == "weights of train baseline/seed1"

    third = load_experiment(_write_experiment(tmp_path / "third", data={"num_train": 9, "num_test": 7}))
    third.train["max_steps"], third.train["checkpoint_steps"] = 4, [2]
    fake.jobs.clear()
    run_experiment(third, tmp_path / "runs" / "third", log=lambda *_: None)
    assert len(fake.jobs) == 4  # other data: nothing is shared


def test_checkpoint_steps_must_lie_inside_the_run(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_steps"):
        load_experiment(_write_experiment(tmp_path, train={"max_steps": 4, "checkpoint_steps": [4]}))


def test_curve_table_rows_per_step_and_arm():
    def result(value, local):
        out = _results(value)
        out["per_category"] = {"local": {p: {"yes_rate": local, "score": 0.0} for p in PERSPECTIVES}}
        return out

    curve = {
        100: aggregate({"baseline": {0: result(0.1, 0.0)}, "reward": {0: result(0.2, 0.05)}}),
        200: aggregate({"baseline": {0: result(0.3, 0.1)}, "reward": {0: result(0.4, 0.25)}}),
    }
    assert reports.format_curve_table(curve).splitlines() == [
        "| step | arm | overall | local |",
        "|---|---|---|---|",
        "| 100 | baseline | 10.0 | 0.0 |",
        "| 100 | reward | 20.0 | 5.0 |",
        "| 200 | baseline | 30.0 | 10.0 |",
        "| 200 | reward | 40.0 | 25.0 |",
    ]


def test_an_edited_config_file_retrains(tmp_path, monkeypatch):
    fake = FakeWorkflow(monkeypatch)
    config = tmp_path / "tiny.yaml"
    config.write_text((REPO / "configs/ip2p_tiny.yaml").read_text())
    experiment = load_experiment(_write_experiment(tmp_path / "exp"))
    for arm in experiment.arms:
        arm.configs = [str(config)]
    run_experiment(experiment, tmp_path / "work", log=lambda *_: None)
    assert len(fake.jobs) == 4
    fake.jobs.clear()
    run_experiment(experiment, tmp_path / "work", log=lambda *_: None)
    assert fake.jobs == []
    config.write_text(config.read_text().replace("learning_rate: 1.0e-3", "learning_rate: 2.0e-3"))
    run_experiment(experiment, tmp_path / "work", log=lambda *_: None)  # same command line, new config contents
    assert len(fake.jobs) == 4


def test_select_arms_keeps_order_and_reused_arms(tmp_path):
    arms = load_experiment(_write_experiment(tmp_path)).arms
    assert [a.name for a in experiments.select_arms(arms, ["reward_scale_2", "baseline"])] == [
        "baseline",
        "reward",
        "reward_scale_2",
    ]
    with pytest.raises(ValueError, match="unknown arm\\(s\\) nope"):
        experiments.select_arms(arms, ["nope"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"reference": "nope"}, "reference 'nope'"),
        ({"color": 1}, "unknown keys"),
        ({"seeds": []}, "'seeds' is empty"),
        ({"data": {"num_trian": 3}}, "unknown keys \\['num_trian'\\]"),
        ({"edit": {"steps": 25}}, "unknown keys \\['steps'\\] .*steps is now num_inference_steps"),
    ],
)
def test_bad_configs_fail_with_a_clear_message(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        load_experiment(_write_experiment(tmp_path, **extra))
    with pytest.raises(FileNotFoundError, match="experiment config not found"):
        load_experiment(tmp_path / "missing")


def _with_arm(tmp_path, arm):
    directory = _write_experiment(tmp_path)
    config = yaml.safe_load((directory / "config.yaml").read_text())
    config["arms"].append(arm)
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    return directory


def test_a_reusing_arm_takes_the_reused_arms_configs(tmp_path):
    arm = {"name": "text3", "reuse": "reward", "edit": {"text_guidance_scale": 3}}
    experiment = load_experiment(_with_arm(tmp_path, arm))
    text3 = experiment.arms[-1]
    assert text3.configs == ["configs/ip2p_tiny.yaml"] and experiment.edit_spec(text3).text_guidance_scale == 3.0


@pytest.mark.parametrize(
    ("arm", "message"),
    [
        ({"name": "x"}, "arm 3 needs 'name' and 'configs'"),
        ({"name": "x", "reuse": "x"}, "reuses 'x', which is not another training arm"),
        ({"name": "x", "reuse": "reward_scale_2"}, "reuses 'reward_scale_2', which is not another training arm"),
        ({"name": "x", "reuse": "reward", "reward": {"variant": "paper"}}, "only its 'edit' settings may differ"),
        ({"name": "x", "reuse": "reward", "train": {"max_steps": 9}}, "only its 'edit' settings may differ"),
    ],
)
def test_bad_reusing_arms_fail_with_a_clear_message(tmp_path, arm, message):
    with pytest.raises(ValueError, match=message):
        load_experiment(_with_arm(tmp_path, arm))


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*/config.yaml")), ids=lambda p: p.parent.name)
def test_shipped_experiments_are_valid(path):
    experiment = load_experiment(path)
    assert len(experiment.seeds) >= 3 and experiment.hypothesis
    for arm in experiment.arms:
        for config in arm.configs:
            assert (REPO / config).exists(), f"{arm.name}: {config} does not exist"
    readme = (path.parent / "README.md").read_text()
    assert "<!-- results:start -->" in readme and "python -m mredit.lab.experiments" in readme


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    assert experiments.main(["--experiment", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m mredit.lab.experiments: error: experiment config not found")
    assert err.count("\n") == 1


def test_cli_reference_pairs_the_selected_arms_with_another_arm(tmp_path, monkeypatch, capsys):
    FakeWorkflow(monkeypatch)
    exp = _write_experiment(tmp_path / "exp")
    argv = ["--experiment", str(exp), "--out", str(tmp_path / "work"), "--arms", "reward_scale_2", "--seeds", "0"]
    assert experiments.main([*argv, "--reference", "reward"]) == 0
    differences = json.loads((exp / "results.json").read_text())["differences"]
    assert list(differences) == ["reward_scale_2"]  # the config's reference, baseline, is not selected
    assert differences["reward_scale_2"]["following"]["yes_rate"]["mean"] == pytest.approx(0.1)
    assert "Paired differences to `reward`" in (exp / "README.md").read_text()

    assert experiments.main([*argv, "--reference", "baseline"]) == 1
    assert "--reference 'baseline' is not a selected arm (reward, reward_scale_2)" in capsys.readouterr().err


def test_edit_arguments_follow_the_edit_cli(tmp_path, capsys):
    spec = workflow.EditSpec(reward_guidance_scale=2.0)
    args = workflow.edit_args(tmp_path / "missing.ckpt", tmp_path, tmp_path / "out", spec, resolution=16)
    options = dict(zip(args[1::2], args[2::2]))
    assert args[0] == "edit" and options["--resolution"] == "16" and options["--scores"] == "[5, 5, 5]"
    assert options["--text_guidance_scale"] == "1.0" and options["--reward_guidance_scale"] == "2.0"
    assert options["--num_inference_steps"] == "25" and options["--use_ema"] == "true"
    # the flags parse in `mredit edit`: it gets as far as looking for the model (a bad flag exits with code 2)
    assert mredit_main(args) == 1
    err = capsys.readouterr().err
    assert "mredit edit: error:" in err and "usage" not in err


def test_the_plan_lists_data_trainings_and_edits_and_writes_nothing(tmp_path):
    exp = _write_experiment(tmp_path / "exp", train={"max_steps": 4, "batch_size": 4, "checkpoint_steps": [2]})
    plan = plan_experiment(load_experiment(exp), tmp_path / "work")
    assert not (tmp_path / "work").exists()
    assert [(d.name, s.seed) for d, s in plan.data] == [("n8_r16_c0.5_s0", 0), ("n8_r16_c0.5_s1", 1)]
    assert [spec.name for spec, _ in plan.trainings] == [
        "baseline/seed0",
        "reward/seed0",
        "baseline/seed1",
        "reward/seed1",
    ]
    assert [run.label for run in plan.runs if run.seed == 0] == [
        "baseline/seed0",
        "baseline/seed0@2",
        "reward/seed0",
        "reward/seed0@2",
        "reward_scale_2/seed0",
        "reward_scale_2/seed0@2",
    ]
    reuse = next(run for run in plan.runs if run.label == "reward_scale_2/seed1@2")
    assert reuse.checkpoint == tmp_path / "work/runs/reward/seed1/step2.ckpt"
    assert reuse.edits == tmp_path / "work/runs/reward_scale_2/seed1/curve/step2/edits"
    assert (
        reuse.edit_spec.reward_guidance_scale == 2.0 and reuse.test_shards == tmp_path / "work/data/n8_r16_c0.5_s1/test"
    )
    assert len(plan_experiment(load_experiment(exp), tmp_path / "work", final_only=True).runs) == 6


def test_two_arms_may_not_need_different_data_in_one_folder(tmp_path):
    experiment = load_experiment(_write_experiment(tmp_path / "exp"))
    experiment.arms[1].data = {"num_test": 14}  # the folder name leaves num_test out
    with pytest.raises(ValueError, match="two arms need different data in"):
        plan_experiment(experiment, tmp_path / "work")


def test_run_jobs_marks_only_succeeded_jobs_done(tmp_path):
    done = []
    ok = [
        jobs.Job(
            f"ok{i}", [sys.executable, "-c", "pass"], tmp_path / f"ok{i}.log", on_success=lambda i=i: done.append(i)
        )
        for i in range(3)
    ]
    jobs.run_jobs(ok, max_parallel=2, poll_s=0.05)
    assert sorted(done) == [0, 1, 2]

    done.clear()
    failing = jobs.Job(
        "bad",
        [sys.executable, "-c", "raise SystemExit('boom')"],
        tmp_path / "bad.log",
        on_success=lambda: done.append("bad"),
    )
    with pytest.raises(RuntimeError, match=r"(?s)bad failed .*boom"):
        jobs.run_jobs([failing], poll_s=0.05)
    assert done == []


def _trained_arm_commands():
    """One ``mredit fit`` command per distinct trained arm of the shipped experiments (seed 0)."""
    commands = {}
    for path in sorted((REPO / "experiments").glob("*/config.yaml")):
        experiment = load_experiment(path)
        for arm in experiment.arms:
            if arm.reuse:
                continue
            spec = workflow.TrainSpec(
                name=arm.name,
                configs=arm.configs,
                out_dir=Path("runs/parse-check"),
                reward=arm.reward,
                overrides=arm.overrides,
                **experiment.train_settings(arm),
            )
            command = workflow.train_command(spec, "data/train")
            commands.setdefault(json.dumps(command[3:]), f"{path.parent.name}/{arm.name}")
    return [pytest.param(json.loads(argv), id=name) for argv, name in commands.items()]


@pytest.mark.parametrize("argv", _trained_arm_commands())
def test_shipped_arms_parse_as_mredit_fit_commands(argv, capsys):
    """Overrides and reward options are raw CLI text in the configs: LightningCLI must accept them."""
    from mredit.training.lightning_cli import run_lightning_cli

    assert argv[0] == "fit"
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli([*argv, "--print_config"])
    assert exit_info.value.code in (0, None), capsys.readouterr().err[-2000:]
