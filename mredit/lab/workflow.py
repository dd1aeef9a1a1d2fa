"""The steps shared by the demo and the experiment runner.

Data (``write_synth_shards`` -> ``annotate`` with the oracle judge -> ``convert`` joining the rewards),
evaluation (``evaluate_edits`` with the oracle) and the standard metrics (``measure``: ``evaluate_metrics``, the
MagicBrush protocol against the exact targets) call the library in this process, each writing its JSON summary
to a log file. Training (``mredit fit``, one process per run, several side by side with a progress bar each)
and editing the test set (``mredit edit --shards``) are subprocess jobs (``mredit.lab.jobs``). Every step skips
work whose output already exists, so an interrupted demo or experiment resumes where it stopped; a training run
killed midway resumes from its last checkpoint (``mredit fit --ckpt_path=last``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mredit.callbacks.training_monitor import step_checkpoint
from mredit.data.convert import convert
from mredit.eval.evaluate import evaluate_metrics
from mredit.eval.exact import COPY_SOURCE, REGIONS, evaluate_exact
from mredit.judge.annotate import RECORDS_NAME, annotate
from mredit.judge.evaluate import evaluate_edits
from mredit.lab.jobs import Job
from mredit.lab.metrics import PROTOCOL, MetricModels
from mredit.synth.generate import write_synth_shards
from mredit.synth.oracle import OracleJudge

REWARD_CALLBACK = "mredit.callbacks.reward_conditioning.RewardConditioning"
MONITOR_CALLBACK = "mredit.callbacks.training_monitor.TrainingMonitor"
CSV_LOGGER = "lightning.pytorch.loggers.CSVLogger"  # loss curves in <run>/lightning_logs, no wandb in the demo
DONE_MARKER = "done.json"
ORACLE_CONCURRENCY = 64  # the oracle answers in microseconds: many requests in flight keep the event loop busy


@dataclass
class DataSpec:
    """The synthetic train (corrupted, oracle-annotated) and test (clean, balanced) sets."""

    num_train: int = 8000
    num_test: int = 140
    resolution: int = 16
    corrupt_rate: float = 0.5
    seed: int = 0
    shard_size: int = 1000
    categories: tuple[str, ...] | None = None  # a subset of the seven kinds of edit, for both splits; None: all
    flaw_model: str = "random"  # how training targets are flawed: random or systematic (docs/synth.md)


@dataclass
class EditSpec:
    """How the test set is edited: the paper runs the reward model at its best rewards (5, 5, 5)."""

    num_inference_steps: int = 25
    scheduler: str = "ddim"
    text_guidance_scale: float = 1.0  # plain conditional sampling: full IP2P guidance breaks the tiny models
    image_guidance_scale: float = 1.0
    reward_guidance_scale: float = 1.0
    scores: tuple[float, float, float] = (5.0, 5.0, 5.0)
    seed: int = 0


@dataclass
class TrainSpec:
    """One training run: LightningCLI config files plus overrides; ``reward`` holds the RewardConditioning
    callback options (``None`` trains the no-reward baseline)."""

    name: str
    configs: list[str]
    out_dir: Path
    max_steps: int
    seed: int = 0
    batch_size: int | None = None
    reward: dict[str, Any] | None = None
    overrides: list[str] = field(default_factory=list)
    num_workers: int = 0  # two runs side by side already fill two cores: decode in the training process
    resolution: int | None = None  # the data's side; None keeps the config's
    checkpoint_steps: list[int] = field(default_factory=list)  # also save the model here (a learning curve)


@dataclass
class DataPaths:
    train: Path
    test: Path


def is_done(path: Path, spec: dict[str, Any]) -> bool:
    marker = path / DONE_MARKER
    return marker.exists() and json.loads(marker.read_text()) == json.loads(json.dumps(spec))  # tuples -> lists


def _mark_done(path: Path, spec: dict[str, Any]) -> None:
    (path / DONE_MARKER).write_text(json.dumps(spec, indent=1))


def _log_summary(log_path: Path, summary: dict[str, Any]) -> None:
    """Append a step's JSON summary to its log file (what the step's CLI command prints)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as f:
        f.write(json.dumps(summary, indent=2) + "\n")


def data_settings(spec: DataSpec) -> dict[str, Any]:
    """What a data folder's done marker holds."""
    settings = asdict(spec)
    if spec.categories is None:  # the caches made before the field existed stay valid
        settings.pop("categories")
    if spec.flaw_model == "random":  # likewise
        settings.pop("flaw_model")
    return settings


def data_paths(out_dir: str | os.PathLike) -> DataPaths:
    """Where ``prepare_data(out_dir, ...)`` puts the training shards (with rewards) and the test shards."""
    return DataPaths(train=Path(out_dir) / "train", test=Path(out_dir) / "test")


def synthesise(out_dir: Path, split: str, num: int, spec: DataSpec, log_path: Path) -> None:
    """``mredit data synth``: ``num`` samples of ``split`` drawn with the spec's resolution, seed and categories."""
    # the test split is clean
    corruption = {"corrupt_rate": spec.corrupt_rate, "flaw_model": spec.flaw_model} if split == "train" else {}
    manifest = write_synth_shards(
        out_dir,
        split,
        num,
        resolution=spec.resolution,
        seed=spec.seed,
        shard_size=spec.shard_size,
        categories=spec.categories,
        **corruption,
    )
    summary = {
        "out": str(out_dir),
        "num_samples": manifest["num_samples"],
        "shards": len(manifest["shards"]),
        "corrupted": manifest["provenance"]["corrupted"],
        "categories": manifest["categories"],
    }
    _log_summary(log_path, summary)


def annotate_with_oracle(shards: Path, out_dir: Path, log_path: Path) -> Path:
    """``mredit judge annotate --judge oracle``: the oracle's judgement of every sample; returns the records file."""
    summary = annotate(str(shards), out_dir, OracleJudge(), concurrency=ORACLE_CONCURRENCY)
    _log_summary(log_path, summary)
    return out_dir / RECORDS_NAME


def join_rewards(shards: Path, records: Path, out_dir: Path, shard_size: int, log_path: Path) -> None:
    """``mredit data convert --src_format shards --rewards``: the shards again, each sample with its reward."""
    flags = {
        "--src_format": "shards",
        "--src": shards,
        "--out": out_dir,
        "--shard_size": shard_size,
        "--rewards": records,
    }
    command = shlex.join(["mredit", "data", "convert", *(str(p) for kv in flags.items() for p in kv)])
    manifest = convert(
        src_format="shards", src=str(shards), out=out_dir, shard_size=shard_size, rewards=str(records), command=command
    )
    summary = {
        "out": str(out_dir),
        "num_samples": manifest["num_samples"],
        "shards": len(manifest["shards"]),
        "reward_coverage": manifest["reward_coverage"],
        "skipped_source_records": manifest["provenance"]["skipped_source_records"]["count"],
    }
    _log_summary(log_path, summary)


def prepare_data(out_dir: str | os.PathLike, spec: DataSpec, log=print) -> DataPaths:
    """Synthesise, annotate with the oracle and join the rewards; cached in ``out_dir`` for the same spec."""
    out_dir = Path(out_dir)
    paths = data_paths(out_dir)
    settings = data_settings(spec)
    if is_done(out_dir, settings):
        log(f"data: reusing {out_dir}")
        return paths
    raw, annotations, logs = out_dir / "train_raw", out_dir / "annotations", out_dir / "logs"
    flawed = f"{spec.corrupt_rate:.0%} corrupted, {spec.flaw_model} flaws"
    log(f"data: synthesising {spec.num_train} training triplets ({flawed})")
    synthesise(raw, "train", spec.num_train, spec, logs / "synth_train.log")
    kinds = f"the {len(spec.categories)} chosen" if spec.categories else "the 7"
    log(f"data: synthesising {spec.num_test} clean test edits, balanced over {kinds} categories")
    synthesise(paths.test, "test", spec.num_test, spec, logs / "synth_test.log")
    log("data: annotating the training rewards with the oracle judge")
    records = annotate_with_oracle(raw, annotations, logs / "annotate.log")
    log("data: joining the rewards into the training shards")
    join_rewards(raw, records, paths.train, spec.shard_size, logs / "convert.log")
    _mark_done(out_dir, settings)
    return paths


def _callback_arg(class_path: str, init_args: dict[str, Any]) -> str:
    return "--trainer.callbacks+=" + json.dumps({"class_path": class_path, "init_args": init_args})


def checkpoint_path(spec: TrainSpec) -> Path:
    return spec.out_dir / "final.ckpt"


def step_checkpoint_path(spec: TrainSpec, step: int) -> Path:
    """The checkpoint ``TrainingMonitor`` saves at ``step`` (one of ``spec.checkpoint_steps``)."""
    return step_checkpoint(checkpoint_path(spec), step)


def run_record(spec: TrainSpec, command: list[str]) -> dict[str, Any]:
    """What a trained run is cached under: its command line and the contents of its config files (an edited
    config must retrain, even though the command line is the same)."""
    configs = {str(c): hashlib.sha256(Path(c).read_bytes()).hexdigest() for c in spec.configs}
    return {"command": command, "config_sha256": configs}


def _started_as(spec: TrainSpec, command: list[str]) -> bool:
    """True when the run in ``spec.out_dir`` was started with this very command line and config files."""
    recorded = spec.out_dir / "command.json"
    return recorded.exists() and json.loads(recorded.read_text()) == run_record(spec, command)


def is_trained(spec: TrainSpec, command: list[str]) -> bool:
    """True when the run's final checkpoint exists and came from this very command line and config files."""
    return checkpoint_path(spec).exists() and _started_as(spec, command)


def resume_checkpoint(spec: TrainSpec) -> Path:
    """Where the configs' ``ModelCheckpoint(save_last=True)`` keeps a run's latest state (``mredit fit`` puts
    ``checkpoints/`` under ``default_root_dir``)."""
    return spec.out_dir / "checkpoints" / "last.ckpt"


def training_job(spec: TrainSpec, train_shards: str | os.PathLike) -> Job | None:
    """The job that trains ``spec`` (``None`` when it is already trained with the same command and configs).

    A run that was started with this very command and config files and stopped before its end (killed, or its
    machine went away) resumes from its last checkpoint; any other run's checkpoints are deleted first, so that
    they cannot be resumed by mistake.
    """
    command = train_command(spec, train_shards)
    if is_trained(spec, command):
        return None
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path(spec).unlink(missing_ok=True)  # a stale model must not survive a failed re-run
    argv = command
    if _started_as(spec, command) and resume_checkpoint(spec).exists():
        argv = [*command, "--ckpt_path=last"]
    else:
        shutil.rmtree(resume_checkpoint(spec).parent, ignore_errors=True)
        # unlinked, not overwritten later: a shared run's checkpoints are hard links to another run's files
        for stale in spec.out_dir.glob("step*.ckpt"):
            stale.unlink()
        (spec.out_dir / "command.json").write_text(json.dumps(run_record(spec, command)))
    return Job(f"train {spec.name}", argv, spec.out_dir / "train.log", spec.out_dir / "progress.json", spec.max_steps)


def train_command(spec: TrainSpec, train_shards: str | os.PathLike) -> list[str]:
    """The ``mredit fit`` command line of a run (config files first, the run's own settings last)."""
    out = spec.out_dir
    argv = [sys.executable, "-m", "mredit", "fit"]
    for config in spec.configs:
        argv += ["--config", str(config)]
    argv += [
        f"--seed_everything={spec.seed}",
        f"--data.train_shards={train_shards}",
        "--data.val_shards=null",
        f"--data.num_workers={spec.num_workers}",
        f"--data.seed={spec.seed}",
        f"--trainer.max_steps={spec.max_steps}",
        "--trainer.max_epochs=-1",
        "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={out}",
        "--trainer.logger=" + json.dumps({"class_path": CSV_LOGGER, "init_args": {"save_dir": str(out)}}),
    ]
    if spec.batch_size:
        argv.append(f"--data.batch_size={spec.batch_size}")
    if spec.resolution:
        argv.append(f"--data.resolution={spec.resolution}")
    if spec.reward is not None:
        argv.append(_callback_arg(REWARD_CALLBACK, spec.reward))
    argv += list(spec.overrides)
    monitor = {"progress_path": str(out / "progress.json"), "checkpoint_path": str(checkpoint_path(spec))}
    if spec.checkpoint_steps:  # absent otherwise, so that runs cached before this option keep their command
        monitor["save_at_steps"] = sorted(spec.checkpoint_steps)
    argv.append(_callback_arg(MONITOR_CALLBACK, monitor))
    return argv


def edit_args(
    checkpoint: str | os.PathLike,
    test_shards: str | os.PathLike,
    out_dir: str | os.PathLike,
    spec: EditSpec,
    resolution: int,
) -> list[str]:
    """The ``mredit edit --shards`` arguments writing ``<out_dir>/<key>.png`` for every test sample at the data's
    resolution (explicit: the CLI's default, the model's training resolution, is the same for the runs made here,
    but not recorded in checkpoints older than it), with the EMA weights of a checkpoint, without progress bars."""
    options = {
        "--model": checkpoint,
        "--shards": test_shards,
        "--out_dir": out_dir,
        "--resolution": resolution,
        "--scores": "[" + ", ".join(f"{s:g}" for s in spec.scores) + "]",
        "--num_inference_steps": spec.num_inference_steps,
        "--scheduler": spec.scheduler,
        "--text_guidance_scale": spec.text_guidance_scale,
        "--image_guidance_scale": spec.image_guidance_scale,
        "--reward_guidance_scale": spec.reward_guidance_scale,
        "--seed": spec.seed,
        "--use_ema": "true",
        "--quiet": "true",  # the job's log is a file: no progress bar in it
    }
    return ["edit", *(str(part) for item in options.items() for part in item)]


def _edit_settings(checkpoint: str | os.PathLike, spec: EditSpec, resolution: int) -> dict[str, Any]:
    stat = Path(checkpoint).stat()
    return {"checkpoint": str(checkpoint), "mtime": stat.st_mtime, **asdict(spec), "resolution": resolution}


def edit_job(
    name: str,
    checkpoint: str | os.PathLike,
    test_shards: str | os.PathLike,
    out_dir: str | os.PathLike,
    spec: EditSpec,
    resolution: int,
) -> Job:
    """The job that edits the test set into ``<out_dir>/<key>.png`` with ``mredit edit --shards`` (its report in
    ``<out_dir>.log``); the done marker is written only when it succeeds. A subprocess with one thread, so that
    several editions run side by side; the command loads any mredit module from its checkpoint (SmartEdit edits
    through its own ``edit`` method)."""
    out_dir = Path(out_dir)
    argv = [sys.executable, "-m", "mredit", *edit_args(checkpoint, test_shards, out_dir, spec, resolution)]
    settings = _edit_settings(checkpoint, spec, resolution)
    return Job(
        f"edit {name}", argv, out_dir.parent / f"{out_dir.name}.log", on_success=lambda: _mark_done(out_dir, settings)
    )


def edits_done(out_dir: str | os.PathLike, checkpoint: str | os.PathLike, spec: EditSpec, resolution: int) -> bool:
    """True when ``out_dir`` holds the edits of this very checkpoint file with these settings."""
    return Path(checkpoint).exists() and is_done(Path(out_dir), _edit_settings(checkpoint, spec, resolution))


def evaluate(edits_dir: str | os.PathLike, test_shards: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """``mredit judge eval --judge oracle`` (the Real-Edit ``paper`` protocol; its summary goes to
    ``<out_dir>/eval.log``); returns ``<out_dir>/results.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = evaluate_edits(
        edits_dir, str(test_shards), OracleJudge(), out_dir, mode="paper", concurrency=ORACLE_CONCURRENCY, seed=0
    )
    summary = {"overall": results["overall"], "coverage": results["coverage"], "report": str(out_dir / "report.md")}
    _log_summary(out_dir / "eval.log", summary)
    return json.loads((out_dir / "results.json").read_text())


def measure(
    edits_dir: str | os.PathLike,
    test_shards: str | os.PathLike,
    out_dir: str | os.PathLike,
    models: MetricModels,
    reuse: bool = False,
) -> dict:
    """``mredit eval metrics --protocol magicbrush`` on the test set's exact targets (its summary goes to
    ``<out_dir>/metrics.log``); with ``reuse``, a result of the same models is kept (the caller drops it when the
    edits change). Returns ``<out_dir>/results.json``."""
    out_dir = Path(out_dir)
    done = out_dir / "results.json"
    if reuse and done.exists():
        cached = json.loads(done.read_text())
        if {k: cached["models"].get(k) for k in ("clip", "dino")} == models.names:
            return cached
    out_dir.mkdir(parents=True, exist_ok=True)
    results = evaluate_metrics(
        edits_dir, str(test_shards), out_dir, PROTOCOL, models.clip, models.dino, batch_size=64, note=models.note
    )
    summary = {"overall": results["overall"], "coverage": results["coverage"], "report": str(out_dir / "report.md")}
    _log_summary(out_dir / "metrics.log", summary)
    return results


def exact_metrics(edits_dir: str | os.PathLike, test_shards: str | os.PathLike) -> dict[str, float]:
    """The judge-free exact metrics of a folder of edits (``mredit.eval.exact``): the mean |edit - target| per region
    (``inside``, ``outside``, ``whole``) and the same for copying the source (``copy_source_<region>``)."""
    models = evaluate_exact({"edits": edits_dir}, str(test_shards))["models"]
    row = {region: models["edits"]["overall"][region]["mean"] for region in REGIONS}
    row.update({f"{COPY_SOURCE}_{region}": models[COPY_SOURCE]["overall"][region]["mean"] for region in REGIONS})
    return row
