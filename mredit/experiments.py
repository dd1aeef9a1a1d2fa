"""Experiments on the synthetic world: arms x seeds, trained, edited and judged by the oracle, aggregated with
95% t-intervals over seeds.

An experiment is data, ``experiments/<name>/config.yaml``::

    name: reward_vs_baseline
    hypothesis: the reward-conditioned model beats the baseline on all three perspectives
    seeds: [0, 1, 2]
    reference: baseline                 # arms are also compared with this one, paired by seed
    data: {num_train: 8000, num_test: 140, resolution: 16, corrupt_rate: 0.5}
    train: {max_steps: 2400, batch_size: 32}
    edit: {steps: 25, scheduler: ddim, text_scale: 1.0, image_scale: 1.0, scores: [5, 5, 5]}
    arms:
      - {name: baseline, configs: [configs/insp2p_tiny.yaml]}
      - {name: official, configs: [configs/insp2p_tiny.yaml], reward: {variant: official}}

An arm may override ``data``, ``train`` (``max_steps``, ``batch_size``) and ``edit`` settings and add raw
LightningCLI ``overrides``; ``reuse: <arm>`` evaluates that arm's trained models with other ``edit`` settings.
``reward`` holds the ``RewardConditioning`` callback options (absent: no reward). The training data of seed ``s``
is drawn with seed ``data.seed + s``, so the interval covers both the data draw and the training randomness.

Run: ``python -m mredit.experiments experiments/reward_vs_baseline [--seeds 0 1] [--max-steps N] ...``.
Every step is cached under ``--out`` (default ``runs/experiments/<name>``): a re-run resumes. Data made with the same
settings in a sibling work folder (another experiment under ``runs/experiments``) is copied, and a run whose
training (command, config files, data settings) matches a finished run there shares its checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from mredit import jobs, sharing, workflow
from mredit.reports import format_aggregate_table, format_experiment_results, replace_between_markers
from mredit.schema import PERSPECTIVES
from mredit.stats import mean_confidence_interval
from mredit.synth.generate import check_categories
from mredit.workflow import DataSpec, EditSpec, TrainSpec

METRICS = ("yes_rate", "score")
ARM_KEYS = {"name", "configs", "reward", "overrides", "data", "train", "edit", "reuse"}
EXPERIMENT_KEYS = {"name", "hypothesis", "seeds", "reference", "data", "train", "edit", "arms", "parallel"}


@dataclass
class Arm:
    name: str
    configs: list[str]
    reward: dict[str, Any] | None = None
    overrides: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    edit: dict[str, Any] = field(default_factory=dict)
    reuse: str | None = None  # another arm whose trained models this arm edits with (only ``edit`` differs)


class Run(NamedTuple):
    """One (arm, seed) at one training step: the checkpoint it edits with (its own, or the reused arm's) and
    where its edits and evaluation go."""

    arm: str
    seed: int
    step: int
    final: bool  # the run's last checkpoint (the headline tables); the others make the learning curve
    checkpoint: Path
    run_dir: Path
    test_shards: Path
    edit_spec: EditSpec
    resolution: int


@dataclass
class Experiment:
    name: str
    arms: list[Arm]
    seeds: list[int]
    hypothesis: str = ""
    reference: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    edit: dict[str, Any] = field(default_factory=dict)
    parallel: int = 2
    directory: Path = Path(".")

    def data_spec(self, arm: Arm, seed: int) -> DataSpec:
        spec = _build(DataSpec, {**self.data, **arm.data}, f"{arm.name}.data")
        categories = None if spec.categories is None else check_categories(spec.categories)
        return dataclasses.replace(spec, seed=spec.seed + seed, categories=categories)

    def edit_spec(self, arm: Arm) -> EditSpec:
        spec = _build(EditSpec, {**self.edit, **arm.edit}, f"{arm.name}.edit")
        return dataclasses.replace(spec, scores=tuple(float(s) for s in spec.scores))

    def train_settings(self, arm: Arm) -> dict[str, Any]:
        settings = {"max_steps": 1000, "batch_size": None, "num_workers": 0, **self.train, **arm.train}
        unknown = set(settings) - {"max_steps", "batch_size", "num_workers", "checkpoint_steps"}
        if unknown:
            raise ValueError(f"{arm.name}.train: unknown keys {sorted(unknown)}")
        steps = settings.get("checkpoint_steps", [])
        if any(not 0 < int(s) < settings["max_steps"] for s in steps):
            raise ValueError(f"{arm.name}.train.checkpoint_steps {steps} must lie between 0 and max_steps")
        return settings


def _build(cls, values: dict[str, Any], where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(names)})")
    return cls(**values)


def load_experiment(path: str | os.PathLike) -> Experiment:
    """Read ``config.yaml`` (or a directory holding it) and check it; relative config paths stay as written
    (they are resolved from the working directory, the repository root)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"experiment config not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = set(raw) - EXPERIMENT_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(EXPERIMENT_KEYS)})")
    for key in ("name", "arms", "seeds"):
        if key not in raw:
            raise ValueError(f"{path}: missing '{key}'")
    arms = []
    for i, arm in enumerate(raw["arms"]):
        if not isinstance(arm, dict) or "name" not in arm or ("configs" not in arm and "reuse" not in arm):
            raise ValueError(f"{path}: arm {i} needs 'name' and 'configs' (or 'reuse')")
        if set(arm) - ARM_KEYS:
            raise ValueError(f"{path}: arm '{arm['name']}' has unknown keys {sorted(set(arm) - ARM_KEYS)}")
        configs = arm.get("configs", [])  # a reusing arm trains nothing: its configs are the reused arm's
        arms.append(Arm(**{**arm, "configs": [configs] if isinstance(configs, str) else list(configs)}))
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate arm names {names}")
    by_name = dict(zip(names, arms))
    for arm in arms:
        if arm.reuse is None:
            continue
        reused = by_name.get(arm.reuse)
        if reused is None or reused is arm or reused.reuse is not None:
            raise ValueError(f"{path}: arm '{arm.name}' reuses '{arm.reuse}', which is not another training arm")
        if arm.reward is not None or arm.overrides or arm.data or arm.train:
            raise ValueError(f"{path}: arm '{arm.name}' reuses '{arm.reuse}': only its 'edit' settings may differ")
        arm.configs = reused.configs
    if raw.get("reference") is not None and raw["reference"] not in names:
        raise ValueError(f"{path}: reference '{raw['reference']}' is not an arm ({names})")
    if not raw["seeds"]:
        raise ValueError(f"{path}: 'seeds' is empty")
    experiment = Experiment(**{**raw, "arms": arms, "seeds": [int(s) for s in raw["seeds"]]}, directory=path.parent)
    for arm in arms:  # fail now, not after an hour of training
        experiment.data_spec(arm, 0), experiment.edit_spec(arm), experiment.train_settings(arm)
    return experiment


def aggregate(runs: dict[str, dict[int, dict[str, Any]]], reference: str | None = None) -> dict[str, Any]:
    """``runs[arm][seed]`` = a ``mredit judge eval`` results dict -> per arm, perspective and metric the mean and
    95% t-interval over seeds; with a reference arm, also the paired differences (arm - reference, same seed)."""
    summary: dict[str, Any] = {"arms": {}, "differences": {}}
    for arm, by_seed in runs.items():
        summary["arms"][arm] = {
            p: {m: mean_confidence_interval([r["overall"][p][m] for r in by_seed.values()]) for m in METRICS}
            for p in PERSPECTIVES
        }
    if reference is not None and reference in runs:
        for arm, by_seed in runs.items():
            shared = sorted(set(by_seed) & set(runs[reference]))
            if arm == reference or not shared:
                continue
            summary["differences"][arm] = {
                p: {
                    m: mean_confidence_interval(
                        [by_seed[s]["overall"][p][m] - runs[reference][s]["overall"][p][m] for s in shared]
                    )
                    for m in METRICS
                }
                for p in PERSPECTIVES
            }
    summary["per_category"] = per_category_means(runs)
    return summary


def per_category_means(runs: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """``[arm][category][perspective][metric]`` = mean over seeds (the per-category n is small, so no interval):
    shows which kinds of edit a model has learned, e.g. local edits or only global ones."""
    means: dict[str, Any] = {}
    for arm, by_seed in runs.items():
        categories = sorted({c for r in by_seed.values() for c in r.get("per_category", {})})
        means[arm] = {
            c: {
                p: {m: sum(r["per_category"][c][p][m] for r in by_seed.values()) / len(by_seed) for m in METRICS}
                for p in PERSPECTIVES
            }
            for c in categories
            if all(c in r.get("per_category", {}) for r in by_seed.values())
        }
    return means


def run_experiment(
    experiment: Experiment,
    out_dir: str | os.PathLike,
    results_dir: str | os.PathLike | None = None,
    log=print,
    final_only: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """Train, edit and evaluate every (arm, seed), then aggregate into ``<results_dir>/results.json`` and the
    results block of ``<results_dir>/README.md`` (``results_dir`` defaults to the experiment's directory).

    ``final_only``: edit and judge only the final models; the curve keeps the steps an earlier run judged. The
    runs still save their ``checkpoint_steps``, so a later run without it completes the curve without retraining.
    ``command``: the command line, written into the README's results block."""
    out_dir = Path(out_dir)
    arms = {arm.name: arm for arm in experiment.arms}
    train_jobs, runs = [], []
    for seed in experiment.seeds:
        for arm in experiment.arms:
            trained = arms[arm.reuse] if arm.reuse else arm  # the arm whose model this arm edits with
            data_spec = experiment.data_spec(trained, seed)
            data_name = f"n{data_spec.num_train}_r{data_spec.resolution}_c{data_spec.corrupt_rate:g}_s{data_spec.seed}"
            if data_spec.categories:
                data_name += "_" + "-".join(data_spec.categories)
            sharing.copy_identical_data(out_dir / "data" / data_name, data_spec, out_dir.parent, log=log)
            data = workflow.prepare_data(out_dir / "data" / data_name, data_spec, log=log)
            spec = TrainSpec(
                name=f"{trained.name}/seed{seed}",
                configs=trained.configs,
                seed=seed,
                out_dir=out_dir / "runs" / trained.name / f"seed{seed}",
                reward=trained.reward,
                overrides=trained.overrides,
                resolution=data_spec.resolution,
                **experiment.train_settings(trained),
            )
            run_dir = out_dir / "runs" / arm.name / f"seed{seed}"
            if not arm.reuse:  # an identical finished run of a sibling experiment is shared, not trained again
                sharing.share_identical_run(spec, data.train, out_dir.parent, log=log)
                job = workflow.training_job(spec, data.train)
                if job is not None:
                    train_jobs.append(job)
            points = [(spec.max_steps, True, workflow.checkpoint_path(spec), run_dir)]  # the final model, the curve
            points += [
                (step, False, workflow.step_checkpoint_path(spec, step), run_dir / "curve" / f"step{step}")
                for step in sorted(spec.checkpoint_steps)
                if not final_only or (run_dir / "curve" / f"step{step}" / "eval" / "results.json").exists()
            ]
            edit = experiment.edit_spec(arm)
            for step, final, ckpt, point_dir in points:
                runs.append(Run(arm.name, seed, step, final, ckpt, point_dir, data.test, edit, data_spec.resolution))
    if train_jobs:
        log(f"training {len(train_jobs)} run(s), {experiment.parallel} at a time")
        jobs.run_jobs(train_jobs, max_parallel=experiment.parallel)
    edit_jobs = [
        workflow.edit_job(
            f"{run.arm}/seed{run.seed}" + ("" if run.final else f"@{run.step}"),
            run.checkpoint,
            run.test_shards,
            run.run_dir / "edits",
            run.edit_spec,
            run.resolution,
        )
        for run in runs
        if not workflow.edits_done(run.run_dir / "edits", run.checkpoint, run.edit_spec, run.resolution)
    ]
    if edit_jobs:
        log(f"editing the test set with {len(edit_jobs)} model(s), {experiment.parallel} at a time")
        jobs.run_jobs(edit_jobs, max_parallel=experiment.parallel)
    results: dict[str, dict[int, dict[str, Any]]] = {arm.name: {} for arm in experiment.arms}
    by_step: dict[int, dict[str, dict[int, dict[str, Any]]]] = {}
    for run in runs:
        edits, eval_dir = run.run_dir / "edits", run.run_dir / "eval"
        done = eval_dir / "results.json"
        cached = json.loads(done.read_text()) if done.exists() else None
        result = cached or workflow.evaluate(edits, run.test_shards, eval_dir)
        by_step.setdefault(run.step, {}).setdefault(run.arm, {})[run.seed] = result
        if run.final:
            results[run.arm][run.seed] = result
    summary = aggregate(results, experiment.reference)
    if len(by_step) > 1:  # checkpoints along the way: the learning curve
        summary["curve"] = {step: aggregate(by_step[step], experiment.reference) for step in sorted(by_step)}
    first = experiment.arms[0]
    budget = {
        "seeds": experiment.seeds,
        **experiment.train_settings(first),
        **dataclasses.asdict(experiment.data_spec(first, 0)),
    }
    budget.pop("seed")
    if budget["categories"] is None:
        budget.pop("categories")
    payload = {
        "experiment": experiment.name,
        "budget": budget,
        **summary,
        "runs": {arm: {str(s): r["overall"] for s, r in by_seed.items()} for arm, by_seed in results.items()},
    }
    results_dir = Path(results_dir or experiment.directory)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "results.json").write_text(json.dumps(payload, indent=1))
    readme = results_dir / "README.md"
    text = readme.read_text() if readme.exists() else f"# {experiment.name}\n"
    block = format_experiment_results(summary, budget, experiment.reference, command)
    readme.write_text(replace_between_markers(text, block))
    log(format_aggregate_table(summary["arms"]))
    return payload


def select_arms(arms: list[Arm], names: list[str]) -> list[Arm]:
    """The named arms, in config order, plus the arms they ``reuse``; an unknown name is an error."""
    known = {arm.name: arm for arm in arms}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown arm(s) {', '.join(unknown)}; the experiment has {', '.join(known)}")
    wanted = set(names) | {known[name].reuse for name in names if known[name].reuse}
    return [arm for arm in arms if arm.name in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mredit.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", help="experiments/<name> or its config.yaml")
    parser.add_argument("--out", help="work dir (default runs/experiments/<name>)")
    parser.add_argument("--results-dir", help="where results.json and README.md go (default: the experiment's dir)")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    parser.add_argument("--arms", nargs="+", help="run and report only these arms (a later full run reuses them)")
    parser.add_argument("--max-steps", type=int, help="override the training steps of every arm")
    parser.add_argument("--batch-size", type=int, help="override the batch size of every arm")
    parser.add_argument("--num-train", type=int, help="override the number of training triplets")
    parser.add_argument("--num-test", type=int, help="override the number of test edits")
    parser.add_argument("--edit-steps", type=int, help="override the sampling steps")
    parser.add_argument("--parallel", type=int, help="runs side by side (one thread each)")
    parser.add_argument("--reference", help="pair the differences with this arm instead of the config's reference")
    parser.add_argument(
        "--final-only",
        action="store_true",
        help="edit and judge only the final models (checkpoint_steps are still saved; a later run adds the curve)",
    )
    args = parser.parse_args(argv)
    try:
        experiment = load_experiment(args.experiment)
        if args.seeds:
            experiment.seeds = args.seeds
        if args.arms:
            experiment.arms = select_arms(experiment.arms, args.arms)
        if args.parallel:
            experiment.parallel = args.parallel
        if args.reference:
            names = [arm.name for arm in experiment.arms]
            if args.reference not in names:
                raise ValueError(f"--reference '{args.reference}' is not a selected arm ({', '.join(names)})")
            experiment.reference = args.reference
        for section, key, value in (
            ("train", "max_steps", args.max_steps),
            ("train", "batch_size", args.batch_size),
            ("data", "num_train", args.num_train),
            ("data", "num_test", args.num_test),
            ("edit", "steps", args.edit_steps),
        ):
            if value is not None:
                getattr(experiment, section)[key] = value
                for arm in experiment.arms:
                    getattr(arm, section).pop(key, None)
        out = args.out or Path("runs/experiments") / experiment.name
        command = shlex.join(["python", "-m", "mredit.experiments", *(sys.argv[1:] if argv is None else argv)])
        run_experiment(experiment, out, args.results_dir, final_only=args.final_only, command=command)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"mredit.experiments: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
