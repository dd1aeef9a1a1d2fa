"""A training run of the demo or of an experiment that stops midway resumes from its last checkpoint; checkpoints
of a different command are never resumed."""

from __future__ import annotations

import json

from mredit.lab import workflow
from mredit.lab.workflow import TrainSpec, resume_checkpoint, training_job


def _spec(tmp_path, max_steps: int = 10) -> TrainSpec:
    return TrainSpec(name="baseline/seed0", configs=["configs/ip2p_tiny.yaml"], out_dir=tmp_path, max_steps=max_steps)


def _stop_midway(spec: TrainSpec) -> None:
    """What a run killed at some step leaves: its command record and ModelCheckpoint's last.ckpt, no final."""
    resume_checkpoint(spec).parent.mkdir(parents=True)
    resume_checkpoint(spec).write_text("state at some step")


def test_a_fresh_run_starts_from_scratch_and_records_its_command(tmp_path):
    spec = _spec(tmp_path)
    job = training_job(spec, "shards")
    assert not any(a.startswith("--ckpt_path") for a in job.argv)
    recorded = json.loads((tmp_path / "command.json").read_text())
    assert recorded == workflow.run_record(spec, job.argv)


def test_a_stopped_run_resumes_from_its_last_checkpoint(tmp_path):
    spec = _spec(tmp_path)
    first = training_job(spec, "shards")
    _stop_midway(spec)
    resumed = training_job(spec, "shards")
    assert resumed.argv == [*first.argv, "--ckpt_path=last"]
    assert resume_checkpoint(spec).exists()
    # the record stays the plain command, so the finished run is cached under it
    assert json.loads((tmp_path / "command.json").read_text()) == workflow.run_record(spec, first.argv)
    workflow.checkpoint_path(spec).write_text("final weights")
    assert training_job(spec, "shards") is None


def test_another_commands_checkpoints_are_deleted_not_resumed(tmp_path):
    training_job(_spec(tmp_path, max_steps=10), "shards")
    _stop_midway(_spec(tmp_path))
    changed = _spec(tmp_path, max_steps=20)
    job = training_job(changed, "shards")
    assert not any(a.startswith("--ckpt_path") for a in job.argv)
    assert not resume_checkpoint(changed).parent.exists()
    assert json.loads((tmp_path / "command.json").read_text())["command"] == job.argv


def test_a_run_never_started_does_not_resume_a_leftover_checkpoint(tmp_path):
    spec = _spec(tmp_path)
    _stop_midway(spec)  # a last.ckpt with no command record: where it came from is unknown
    job = training_job(spec, "shards")
    assert not any(a.startswith("--ckpt_path") for a in job.argv)
    assert not resume_checkpoint(spec).exists()
