"""The steps shared by the demo and the experiment runner, each through the project's own CLIs.

data (``mredit data synth`` -> ``mredit judge annotate --judge oracle`` -> ``mredit data convert --rewards``),
training (``mredit fit``, one process per run, several side by side with a progress bar each), editing the test
set (``mredit edit --shards``) and evaluation (``mredit judge eval --judge oracle``). Every step skips work whose
output already exists, so an interrupted demo or experiment resumes where it stopped; a training run killed midway
resumes from its last checkpoint (``mredit fit --ckpt_path=last``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from mredit.jobs import Job

REWARD_CALLBACK = "mredit.callbacks.reward_conditioning.RewardConditioning"
CSV_LOGGER = "lightning.pytorch.loggers.CSVLogger"  # loss curves in <run>/lightning_logs, no wandb in the demo
DONE_MARKER = "done.json"


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


@dataclass
class EditSpec:
    """How the test set is edited: the paper runs the reward model at its best rewards (5, 5, 5)."""

    steps: int = 25
    scheduler: str = "ddim"
    text_scale: float = 1.0  # plain conditional sampling: full IP2P guidance breaks tiny models (tiny-scale notes)
    image_scale: float = 1.0
    reward_scale: float = 1.0
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


def run_tool(argv: Sequence[str], log_path: str | os.PathLike | None = None) -> None:
    """Run an ``mredit`` tool command in this process, its printed report going to ``log_path`` when given;
    a non-zero exit becomes a RuntimeError (the tool's own one-line error is on stderr)."""
    from mredit.cli import main

    argv = [str(a) for a in argv]
    with contextlib.ExitStack() as stack:
        if log_path is not None:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(log_path, "a"))))
        try:
            code = main(argv)
        except SystemExit as e:  # argparse exits on a bad command line
            code = e.code
    if code:
        raise RuntimeError(f"'mredit {' '.join(argv)}' failed with exit code {code}")


def is_done(path: Path, spec: dict[str, Any]) -> bool:
    marker = path / DONE_MARKER
    return marker.exists() and json.loads(marker.read_text()) == json.loads(json.dumps(spec))  # tuples -> lists


def _mark_done(path: Path, spec: dict[str, Any]) -> None:
    (path / DONE_MARKER).write_text(json.dumps(spec, indent=1))


def data_settings(spec: DataSpec) -> dict[str, Any]:
    """What a data folder's done marker holds."""
    settings = asdict(spec)
    if spec.categories is None:  # the caches made before the field existed stay valid
        settings.pop("categories")
    return settings


def prepare_data(out_dir: str | os.PathLike, spec: DataSpec, log=print) -> DataPaths:
    """Synthesise, annotate with the oracle and join the rewards; cached in ``out_dir`` for the same spec."""
    out_dir = Path(out_dir)
    paths = DataPaths(train=out_dir / "train", test=out_dir / "test")
    settings = data_settings(spec)
    if is_done(out_dir, settings):
        log(f"data: reusing {out_dir}")
        return paths
    common = f"--resolution {spec.resolution} --seed {spec.seed} --shard-size {spec.shard_size}".split()
    if spec.categories is not None:
        common += ["--categories", *spec.categories]
    raw, annotations, logs = out_dir / "train_raw", out_dir / "annotations", out_dir / "logs"
    log(f"data: synthesising {spec.num_train} training triplets ({spec.corrupt_rate:.0%} corrupted)")
    synth = ["data", "synth", "--split", "train", "--num", spec.num_train, "--corrupt-rate", spec.corrupt_rate]
    run_tool([*synth, "--out", raw, *common], logs / "synth_train.log")
    kinds = f"the {len(spec.categories)} chosen" if spec.categories else "the 7"
    log(f"data: synthesising {spec.num_test} clean test edits, balanced over {kinds} categories")
    run_tool(
        ["data", "synth", "--split", "test", "--num", spec.num_test, "--out", paths.test, *common],
        logs / "synth_test.log",
    )
    log("data: annotating the training rewards with the oracle judge (mredit judge annotate)")
    annotate = ["judge", "annotate", "--judge", "oracle", "--concurrency", "64"]
    run_tool([*annotate, "--shards", raw, "--out", annotations], logs / "annotate.log")
    log("data: joining the rewards into the training shards (mredit data convert --rewards)")
    convert = ["data", "convert", "--from", "shards", "--shard-size", spec.shard_size]
    run_tool(
        [*convert, "--src", raw, "--out", paths.train, "--rewards", annotations / "annotations.jsonl"],
        logs / "convert.log",
    )
    _mark_done(out_dir, settings)
    return paths


class TrainingMonitor(pl.Callback):
    """Writes ``{"step", "max_steps", "loss"}`` to a JSON file for the parent's progress bars, saves the final
    checkpoint to a known path when training ends and, at each of ``save_at_steps``, ``step<N>.ckpt`` beside it."""

    def __init__(
        self, progress_path: str, checkpoint_path: str, every_n_steps: int = 5, save_at_steps: list[int] | None = None
    ) -> None:
        self.progress_path, self.checkpoint_path, self.every_n_steps = progress_path, checkpoint_path, every_n_steps
        self.save_at_steps, self._saved = set(save_at_steps or []), set()

    def _write(self, trainer: pl.Trainer, loss: float | None) -> None:
        tmp = f"{self.progress_path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"step": trainer.global_step, "max_steps": trainer.max_steps, "loss": loss}, f)
        os.replace(tmp, self.progress_path)  # atomic: the parent never reads half a file

    def _save_step(self, trainer: pl.Trainer) -> None:
        step = trainer.global_step
        if step in self.save_at_steps and step not in self._saved:  # once, even with gradient accumulation
            trainer.save_checkpoint(str(_step_checkpoint(Path(self.checkpoint_path), step)))
            self._saved.add(step)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a run resumed from a checkpoint taken at one of the steps, killed before it saved step<N>.ckpt
        if not _step_checkpoint(Path(self.checkpoint_path), trainer.global_step).exists():
            self._save_step(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx):
        self._save_step(trainer)
        step = trainer.global_step
        if step % self.every_n_steps == 0 and trainer.is_global_zero:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            self._write(trainer, float(loss) if loss is not None else None)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.checkpoint_path)
        if trainer.is_global_zero:
            self._write(trainer, None)


def _callback_arg(class_path: str, init_args: dict[str, Any]) -> str:
    return "--trainer.callbacks+=" + json.dumps({"class_path": class_path, "init_args": init_args})


def checkpoint_path(spec: TrainSpec) -> Path:
    return spec.out_dir / "final.ckpt"


def _step_checkpoint(final: Path, step: int) -> Path:
    return final.with_name(f"step{step}.ckpt")


def step_checkpoint_path(spec: TrainSpec, step: int) -> Path:
    """The checkpoint ``TrainingMonitor`` saves at ``step`` (one of ``spec.checkpoint_steps``)."""
    return _step_checkpoint(checkpoint_path(spec), step)


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
    argv.append(_callback_arg("mredit.workflow.TrainingMonitor", monitor))
    return argv


def edit_args(
    checkpoint: str | os.PathLike,
    test_shards: str | os.PathLike,
    out_dir: str | os.PathLike,
    spec: EditSpec,
    resolution: int,
) -> list[str]:
    """The ``mredit edit --shards`` arguments writing ``<out_dir>/<key>.png`` for every test sample at the data's
    resolution (the CLI's default, 512, is for real photos)."""
    options = {
        "--model": checkpoint,
        "--shards": test_shards,
        "--out-dir": out_dir,
        "--resolution": resolution,
        "--scores": ",".join(f"{s:g}" for s in spec.scores),
        "--steps": spec.steps,
        "--scheduler": spec.scheduler,
        "--text-scale": spec.text_scale,
        "--image-scale": spec.image_scale,
        "--reward-scale": spec.reward_scale,
        "--seed": spec.seed,
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
    """``mredit judge eval`` with the oracle (its report goes to ``<out_dir>/eval.log``); returns ``results.json``."""
    out_dir = Path(out_dir)
    command = ["judge", "eval", "--judge", "oracle", "--concurrency", "64", "--edits", edits_dir]
    run_tool([*command, "--benchmark", test_shards, "--out", out_dir], out_dir / "eval.log")
    return json.loads((out_dir / "results.json").read_text())
