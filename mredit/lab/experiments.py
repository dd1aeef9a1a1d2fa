"""Experiments on the synthetic world: arms x seeds, trained, edited and judged by the oracle, aggregated with
95% t-intervals over seeds.

An experiment is data, ``experiments/<name>/config.yaml``::

    name: reward_vs_baseline
    hypothesis: the reward-conditioned model beats the baseline on all three perspectives
    seeds: [0, 1, 2]
    reference: baseline                 # arms are also compared with this one, paired by seed
    data: {num_train: 8000, num_test: 140, resolution: 16, corrupt_rate: 0.5}
    train: {max_steps: 2400, batch_size: 32}
    edit: {num_inference_steps: 25, scheduler: ddim, text_guidance_scale: 1.0, image_guidance_scale: 1.0,
           scores: [5, 5, 5]}
    arms:
      - {name: baseline, configs: [configs/ip2p_tiny.yaml]}
      - {name: official, configs: [configs/ip2p_tiny.yaml], reward: {variant: official}}

An arm may override ``data``, ``train`` (``max_steps``, ``batch_size``) and ``edit`` settings and add raw
LightningCLI ``overrides``; ``reuse: <arm>`` evaluates that arm's trained models with other ``edit`` settings.
``reward`` holds the ``RewardConditioning`` callback options (absent: no reward). The training data of seed ``s``
is drawn with seed ``data.seed + s``, so the interval covers both the data draw and the training randomness.

``run_experiment`` goes through its steps, each a function: ``plan_experiment`` (what to make, train, edit and
judge; nothing runs), ``prepare`` (the data), ``train``, ``edit``, ``evaluate`` (the oracle), ``measure`` (the
MagicBrush metrics of the final models against the exact targets; with tiny random CLIP and DINO unless
``--clip`` / ``--dino`` name real ones, so CLIP-I and DINO are then only a wiring check) and ``report``
(``results.json`` and the README's results block).

Run: ``python -m mredit.lab.experiments --experiment experiments/reward_vs_baseline [--seeds '[0, 1]']
[--max_steps N] ...``. Every step is cached under ``--out`` (default ``runs/experiments/<name>``): a re-run
resumes. Data made with the same settings in a sibling work folder (another experiment under
``runs/experiments``) is copied, and a run whose training (command, config files, data settings) matches a
finished run there shares its checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from mredit.cli.parsing import run_command
from mredit.eval.exact import COPY_SOURCE, REGIONS
from mredit.lab import jobs, sharing, workflow
from mredit.lab.metrics import PROTOCOL, MetricModels, metric_models
from mredit.lab.reports import format_aggregate_table, format_experiment_results, replace_between_markers
from mredit.lab.stats import mean_confidence_interval
from mredit.lab.workflow import DataPaths, DataSpec, EditSpec, TrainSpec
from mredit.schema import PERSPECTIVES
from mredit.synth.generate import check_categories

METRICS = ("yes_rate", "score")
ARM_KEYS = {"name", "configs", "reward", "overrides", "data", "train", "edit", "reuse"}
EXPERIMENT_KEYS = {"name", "hypothesis", "seeds", "reference", "data", "train", "edit", "arms", "parallel"}
TRAIN_KEYS = {"max_steps", "batch_size", "num_workers", "checkpoint_steps"}
# the edit settings' names before the renovation, for a clear error on an old config
RENAMED_EDIT_KEYS = {
    "steps": "num_inference_steps",
    "text_scale": "text_guidance_scale",
    "image_scale": "image_guidance_scale",
    "reward_scale": "reward_guidance_scale",
}


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

    @property
    def edits(self) -> Path:
        return self.run_dir / "edits"

    @property
    def eval_dir(self) -> Path:
        return self.run_dir / "eval"

    @property
    def metrics_dir(self) -> Path:
        return self.run_dir / "metrics"

    @property
    def label(self) -> str:
        return f"{self.arm}/seed{self.seed}" + ("" if self.final else f"@{self.step}")


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
        spec = _build(EditSpec, {**self.edit, **arm.edit}, f"{arm.name}.edit", RENAMED_EDIT_KEYS)
        return dataclasses.replace(spec, scores=tuple(float(s) for s in spec.scores))

    def train_settings(self, arm: Arm) -> dict[str, Any]:
        settings = {"max_steps": 1000, "batch_size": None, "num_workers": 0, **self.train, **arm.train}
        unknown = set(settings) - TRAIN_KEYS
        if unknown:
            raise ValueError(f"{arm.name}.train: unknown keys {sorted(unknown)}")
        steps = settings.get("checkpoint_steps", [])
        if any(not 0 < int(s) < settings["max_steps"] for s in steps):
            raise ValueError(f"{arm.name}.train.checkpoint_steps {steps} must lie between 0 and max_steps")
        return settings


def _build(cls, values: dict[str, Any], where: str, renamed: dict[str, str] | None = None):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        hints = [f"{old} is now {new}" for old, new in (renamed or {}).items() if old in unknown]
        hint = f"; {', '.join(hints)}" if hints else ""
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(names)}{hint})")
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
    arms = [_load_arm(path, i, arm) for i, arm in enumerate(raw["arms"])]
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate arm names {names}")
    _resolve_reuse(path, arms)
    if raw.get("reference") is not None and raw["reference"] not in names:
        raise ValueError(f"{path}: reference '{raw['reference']}' is not an arm ({names})")
    if not raw["seeds"]:
        raise ValueError(f"{path}: 'seeds' is empty")
    experiment = Experiment(**{**raw, "arms": arms, "seeds": [int(s) for s in raw["seeds"]]}, directory=path.parent)
    for arm in arms:  # fail now, not after an hour of training
        experiment.data_spec(arm, 0), experiment.edit_spec(arm), experiment.train_settings(arm)
    return experiment


def _load_arm(path: Path, index: int, arm: Any) -> Arm:
    if not isinstance(arm, dict) or "name" not in arm or ("configs" not in arm and "reuse" not in arm):
        raise ValueError(f"{path}: arm {index} needs 'name' and 'configs' (or 'reuse')")
    if set(arm) - ARM_KEYS:
        raise ValueError(f"{path}: arm '{arm['name']}' has unknown keys {sorted(set(arm) - ARM_KEYS)}")
    configs = arm.get("configs", [])  # a reusing arm trains nothing: its configs are the reused arm's
    return Arm(**{**arm, "configs": [configs] if isinstance(configs, str) else list(configs)})


def _resolve_reuse(path: Path, arms: list[Arm]) -> None:
    """Check the ``reuse`` arms and give them the reused arm's configs."""
    by_name = {arm.name: arm for arm in arms}
    for arm in arms:
        if arm.reuse is None:
            continue
        reused = by_name.get(arm.reuse)
        if reused is None or reused is arm or reused.reuse is not None:
            raise ValueError(f"{path}: arm '{arm.name}' reuses '{arm.reuse}', which is not another training arm")
        if arm.reward is not None or arm.overrides or arm.data or arm.train:
            raise ValueError(f"{path}: arm '{arm.name}' reuses '{arm.reuse}': only its 'edit' settings may differ")
        arm.configs = reused.configs


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


# --- the steps of an experiment: plan, prepare (data), train, edit, evaluate, report ---


@dataclass
class Plan:
    """What an experiment makes, trains, edits and judges, worked out before anything runs."""

    out_dir: Path
    data: list[tuple[Path, DataSpec]] = field(default_factory=list)  # data folders, in order of first use
    trainings: list[tuple[TrainSpec, Path]] = field(default_factory=list)  # (run, its training shards)
    runs: list[Run] = field(default_factory=list)  # every (arm, seed, step) edited and judged


def data_name(spec: DataSpec) -> str:
    """The data folder of a spec under ``<out>/data`` (shared by the arms and experiments that draw the same)."""
    name = f"n{spec.num_train}_r{spec.resolution}_c{spec.corrupt_rate:g}_s{spec.seed}"
    name += f"_f{spec.flaw_model}" if spec.flaw_model != "random" else ""  # random: the folders made before it
    return name + ("_" + "-".join(spec.categories) if spec.categories else "")


def plan_experiment(experiment: Experiment, out_dir: str | os.PathLike, final_only: bool = False) -> Plan:
    """Every (arm, seed): its data folder, its training run (the reused arm's for a ``reuse`` arm) and the points
    it is edited and judged at (the final model, then the ``checkpoint_steps`` of the learning curve; with
    ``final_only`` only the curve points judged before). Reads the work folder, writes nothing."""
    plan = Plan(Path(out_dir))
    arms = {arm.name: arm for arm in experiment.arms}
    for seed in experiment.seeds:
        for arm in experiment.arms:
            trained = arms[arm.reuse] if arm.reuse else arm  # the arm whose model this arm edits with
            data_spec = experiment.data_spec(trained, seed)
            data = _plan_data(plan, data_spec)
            spec = _train_spec(experiment, trained, seed, plan.out_dir, data_spec.resolution)
            if not arm.reuse:
                plan.trainings.append((spec, data.train))
            edit = experiment.edit_spec(arm)
            run_dir = plan.out_dir / "runs" / arm.name / f"seed{seed}"
            for step, final, ckpt, point_dir in _edit_points(spec, run_dir, final_only):
                plan.runs.append(
                    Run(arm.name, seed, step, final, ckpt, point_dir, data.test, edit, data_spec.resolution)
                )
    return plan


def _train_spec(experiment: Experiment, arm: Arm, seed: int, out_dir: Path, resolution: int) -> TrainSpec:
    return TrainSpec(
        name=f"{arm.name}/seed{seed}",
        configs=arm.configs,
        seed=seed,
        out_dir=out_dir / "runs" / arm.name / f"seed{seed}",
        reward=arm.reward,
        overrides=arm.overrides,
        resolution=resolution,
        **experiment.train_settings(arm),
    )


def _edit_points(spec: TrainSpec, run_dir: Path, final_only: bool) -> list[tuple[int, bool, Path, Path]]:
    """(step, final, checkpoint, folder of its edits and evaluation): the final model, then the learning curve."""
    points = [(spec.max_steps, True, workflow.checkpoint_path(spec), run_dir)]
    for step in sorted(spec.checkpoint_steps):
        point_dir = run_dir / "curve" / f"step{step}"
        if not final_only or (point_dir / "eval" / "results.json").exists():
            points.append((step, False, workflow.step_checkpoint_path(spec, step), point_dir))
    return points


def _plan_data(plan: Plan, spec: DataSpec) -> DataPaths:
    """Add the data folder of ``spec`` to the plan (once); two specs may not share a folder."""
    data_dir = plan.out_dir / "data" / data_name(spec)
    for planned_dir, planned in plan.data:
        if planned_dir == data_dir and planned != spec:
            raise ValueError(f"two arms need different data in {data_dir}: {planned} and {spec}")
    if (data_dir, spec) not in plan.data:
        plan.data.append((data_dir, spec))
    return workflow.data_paths(data_dir)


def prepare(plan: Plan, log=print) -> None:
    """Make every data folder of the plan (copied from a sibling experiment's work folder when it has the same)."""
    for data_dir, spec in plan.data:
        sharing.copy_identical_data(data_dir, spec, plan.out_dir.parent, log=log)
        workflow.prepare_data(data_dir, spec, log=log)


def train(plan: Plan, parallel: int = 2, log=print) -> None:
    """Train the plan's runs that are not trained yet, ``parallel`` side by side; an identical finished run of a
    sibling experiment is shared, not trained again."""
    train_jobs = []
    for spec, train_shards in plan.trainings:
        sharing.share_identical_run(spec, train_shards, plan.out_dir.parent, log=log)
        job = workflow.training_job(spec, train_shards)
        if job is not None:
            train_jobs.append(job)
    if train_jobs:
        log(f"training {len(train_jobs)} run(s), {parallel} at a time")
        jobs.run_jobs(train_jobs, max_parallel=parallel)


def edit(runs: list[Run], parallel: int = 2, log=print) -> None:
    """Edit the test set with every run's checkpoint whose edits are missing or stale, ``parallel`` side by side;
    a re-edited run's old evaluation is dropped, so that ``evaluate`` judges the new edits."""
    edit_jobs = []
    for run in runs:
        if workflow.edits_done(run.edits, run.checkpoint, run.edit_spec, run.resolution):
            continue
        (run.eval_dir / "results.json").unlink(missing_ok=True)
        (run.metrics_dir / "results.json").unlink(missing_ok=True)
        edit_jobs.append(
            workflow.edit_job(run.label, run.checkpoint, run.test_shards, run.edits, run.edit_spec, run.resolution)
        )
    if edit_jobs:
        log(f"editing the test set with {len(edit_jobs)} model(s), {parallel} at a time")
        jobs.run_jobs(edit_jobs, max_parallel=parallel)


def evaluate(runs: list[Run]) -> list[dict[str, Any]]:
    """Judge every run's edits with the oracle (a run judged before keeps its ``eval/results.json``); the results
    in the order of ``runs``."""
    results = []
    for run in runs:
        done = run.eval_dir / "results.json"
        cached = json.loads(done.read_text()) if done.exists() else None
        results.append(cached or workflow.evaluate(run.edits, run.test_shards, run.eval_dir))
    return results


def measure(runs: list[Run], models: MetricModels) -> list[dict[str, Any] | None]:
    """The MagicBrush metrics of every final run's edits against the exact targets (a run measured before with the
    same models keeps its ``metrics/results.json``); None for the learning curve's runs, in the order of ``runs``."""
    return [
        workflow.measure(run.edits, run.test_shards, run.metrics_dir, models, reuse=True) if run.final else None
        for run in runs
    ]


def aggregate_metrics(runs: list[Run], metrics: list[dict[str, Any] | None]) -> dict[str, Any]:
    """``[arm][metric]`` = mean and 95% t-interval over seeds of the final runs' MagicBrush metrics."""
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for run, result in zip(runs, metrics):
        if run.final and result is not None:
            by_arm.setdefault(run.arm, []).append(result["overall"][PROTOCOL])
    out = {}
    for arm, results in by_arm.items():
        names = [m for m in results[0] if all(r[m]["mean"] is not None for r in results)]
        out[arm] = {m: mean_confidence_interval([r[m]["mean"] for r in results]) for m in names}
    return out


def measure_exact(runs: list[Run]) -> list[dict[str, float] | None]:
    """``workflow.exact_metrics`` of every final run (its edits and copying the source, on its seed's test set);
    None for the learning curve's runs, in the order of ``runs``. Pixel arithmetic, so not cached."""
    return [workflow.exact_metrics(run.edits, run.test_shards) if run.final else None for run in runs]


def aggregate_exact(runs: list[Run], exact: list[dict[str, float] | None], reference: str | None) -> dict[str, Any]:
    """``{"arms": {arm: {region: mean and 95% t-interval over seeds}}, "differences": {arm: {region: ...}}}`` of
    the final runs' exact metrics; the ``copy_source`` row comes from the reference arm's test sets (or the first
    arm's), and the differences are arm - reference paired by seed (negative: closer to the exact target)."""
    by_arm: dict[str, dict[int, dict[str, float]]] = {}
    for run, row in zip(runs, exact):
        if run.final and row is not None:
            by_arm.setdefault(run.arm, {})[run.seed] = row
    if not by_arm:
        return {}

    def interval(rows: list[dict[str, float]], prefix: str = "") -> dict[str, Any]:
        return {r: mean_confidence_interval([row[prefix + r] for row in rows]) for r in REGIONS}

    arms = {arm: interval(list(by_seed.values())) for arm, by_seed in by_arm.items()}
    source_arm = reference if reference in by_arm else next(iter(by_arm))
    arms[COPY_SOURCE] = interval(list(by_arm[source_arm].values()), f"{COPY_SOURCE}_")
    differences = {}
    if reference in by_arm:
        for arm, by_seed in by_arm.items():
            shared = sorted(set(by_seed) & set(by_arm[reference]))
            if arm == reference or not shared:
                continue
            differences[arm] = {
                r: mean_confidence_interval([by_seed[s][r] - by_arm[reference][s][r] for s in shared]) for r in REGIONS
            }
    return {"arms": arms, "differences": differences}


def summarise(
    experiment: Experiment,
    runs: list[Run],
    results: list[dict[str, Any]],
    metrics: list[dict[str, Any] | None] | None = None,
    exact: list[dict[str, float] | None] | None = None,
) -> dict[str, Any]:
    """The payload of ``results.json``: the experiment's budget, ``aggregate`` of the final models (and, when
    checkpoints were judged along the way, a ``curve`` of the same per step), each final run's overall scores
    and, when measured, the exact metrics (``exact``, ``aggregate_exact``) and the MagicBrush metrics of the final
    models (``metrics``, ``metrics_note``)."""
    final: dict[str, dict[int, dict[str, Any]]] = {arm.name: {} for arm in experiment.arms}
    by_step: dict[int, dict[str, dict[int, dict[str, Any]]]] = {}
    for run, result in zip(runs, results):
        by_step.setdefault(run.step, {}).setdefault(run.arm, {})[run.seed] = result
        if run.final:
            final[run.arm][run.seed] = result
    summary = aggregate(final, experiment.reference)
    if len(by_step) > 1:  # checkpoints along the way: the learning curve
        summary["curve"] = {step: aggregate(by_step[step], experiment.reference) for step in sorted(by_step)}
    payload = {
        "experiment": experiment.name,
        "budget": budget(experiment),
        **summary,
        "runs": {arm: {str(s): r["overall"] for s, r in by_seed.items()} for arm, by_seed in final.items()},
    }
    if exact is not None and any(row is not None for row in exact):
        payload["exact"] = aggregate_exact(runs, exact, experiment.reference)
    if metrics is not None and any(m is not None for m in metrics):
        payload["metrics"] = aggregate_metrics(runs, metrics)
        measured = next(m for m in metrics if m is not None)
        payload["metrics_models"] = measured["models"]
        payload["metrics_note"] = measured.get("note")
    return payload


def budget(experiment: Experiment) -> dict[str, Any]:
    """The seeds, training settings and data settings of the first arm (what the results block states)."""
    first = experiment.arms[0]
    settings = {
        "seeds": experiment.seeds,
        **experiment.train_settings(first),
        **dataclasses.asdict(experiment.data_spec(first, 0)),
    }
    settings.pop("seed")
    if settings["categories"] is None:
        settings.pop("categories")
    return settings


def report(
    experiment: Experiment,
    payload: dict[str, Any],
    results_dir: str | os.PathLike,
    command: str | None = None,
    log=print,
) -> None:
    """Write ``<results_dir>/results.json`` and the results block of ``<results_dir>/README.md`` (between its
    ``<!-- results:start/end -->`` markers, made by ``command``); log the aggregate table."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "results.json").write_text(json.dumps(payload, indent=1))
    readme = results_dir / "README.md"
    text = readme.read_text() if readme.exists() else f"# {experiment.name}\n"
    block = format_experiment_results(payload, payload["budget"], experiment.reference, command)
    readme.write_text(replace_between_markers(text, block))
    log(format_aggregate_table(payload["arms"]))


def run_experiment(
    experiment: Experiment,
    out_dir: str | os.PathLike,
    results_dir: str | os.PathLike | None = None,
    log=print,
    final_only: bool = False,
    command: str | None = None,
    models: MetricModels | None = None,
) -> dict[str, Any]:
    """Plan, prepare the data, train, edit, evaluate and measure every (arm, seed), then report into
    ``<results_dir>/results.json`` and the results block of ``<results_dir>/README.md`` (``results_dir``
    defaults to the experiment's directory); returns the ``results.json`` payload.

    ``final_only``: edit and judge only the final models; the curve keeps the steps an earlier run judged. The
    runs still save their ``checkpoint_steps``, so a later run without it completes the curve without retraining.
    ``command``: the command line, written into the README's results block. ``models``: the CLIP and DINO of
    the MagicBrush metrics (default: tiny random ones, a wiring check)."""
    plan = plan_experiment(experiment, out_dir, final_only)
    prepare(plan, log=log)
    train(plan, experiment.parallel, log=log)
    edit(plan.runs, experiment.parallel, log=log)
    results = evaluate(plan.runs)
    metrics = measure(plan.runs, models or metric_models())
    payload = summarise(experiment, plan.runs, results, metrics, measure_exact(plan.runs))
    report(experiment, payload, results_dir or experiment.directory, command, log=log)
    return payload


# --- the command line ---


def select_arms(arms: list[Arm], names: list[str]) -> list[Arm]:
    """The named arms, in config order, plus the arms they ``reuse``; an unknown name is an error."""
    known = {arm.name: arm for arm in arms}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown arm(s) {', '.join(unknown)}; the experiment has {', '.join(known)}")
    wanted = set(names) | {known[name].reuse for name in names if known[name].reuse}
    return [arm for arm in arms if arm.name in wanted]


def apply_overrides(experiment: Experiment, section: str, values: dict[str, Any]) -> None:
    """Set ``values`` (``None``: not given) in the experiment's ``section`` (data, train or edit) for every arm."""
    for key, value in values.items():
        if value is None:
            continue
        getattr(experiment, section)[key] = value
        for arm in experiment.arms:
            getattr(arm, section).pop(key, None)


def run(
    experiment: str,
    out: str | None = None,
    results_dir: str | None = None,
    seeds: int | list[int] | None = None,
    arms: str | list[str] | None = None,
    max_steps: int | None = None,
    batch_size: int | None = None,
    num_train: int | None = None,
    num_test: int | None = None,
    num_inference_steps: int | None = None,
    parallel: int | None = None,
    reference: str | None = None,
    final_only: bool = False,
    command: str | None = None,
    clip: str | None = None,
    dino: str | None = None,
) -> dict[str, Any]:
    """Run an experiment on the synthetic world: arms x seeds, trained, edited and judged by the oracle.

    Args:
        experiment: experiments/<name> or its config.yaml.
        out: the work folder, every step cached in it (default runs/experiments/<name>).
        results_dir: where results.json and README.md go (default the experiment's folder).
        seeds: the seeds to run instead of the config's, e.g. '[0, 1]'.
        arms: run and report only these arms, e.g. '[baseline, paper]' (a later full run reuses them).
        max_steps: the training steps of every arm.
        batch_size: the training batch size of every arm.
        num_train: the number of training triplets.
        num_test: the number of test edits.
        num_inference_steps: the sampling steps of the edits.
        parallel: runs side by side (one thread each; default the config's).
        reference: pair the differences with this arm instead of the config's reference.
        final_only: edit and judge only the final models (checkpoint_steps are still saved; a later run adds
            the learning curve).
        command: the command line, written into the README's results block.
        clip: a CLIP model (folder or hub id) for the MagicBrush metrics; default a tiny random one (a wiring check).
        dino: a DINO model (folder or hub id) for the MagicBrush metrics; default a tiny random one (a wiring check).
    """
    loaded = load_experiment(experiment)
    if seeds is not None:
        loaded.seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    if arms is not None:
        loaded.arms = select_arms(loaded.arms, [arms] if isinstance(arms, str) else list(arms))
    if parallel:
        loaded.parallel = parallel
    if reference:
        names = [arm.name for arm in loaded.arms]
        if reference not in names:
            raise ValueError(f"--reference '{reference}' is not a selected arm ({', '.join(names)})")
        loaded.reference = reference
    apply_overrides(loaded, "train", {"max_steps": max_steps, "batch_size": batch_size})
    apply_overrides(loaded, "data", {"num_train": num_train, "num_test": num_test})
    apply_overrides(loaded, "edit", {"num_inference_steps": num_inference_steps})
    work = out or Path("runs/experiments") / loaded.name
    models = metric_models(clip, dino)
    return run_experiment(loaded, work, results_dir, final_only=final_only, command=command, models=models)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-m", "mredit.lab.experiments", *argv])
    return run_command("python -m mredit.lab.experiments", run, argv, command=command)


if __name__ == "__main__":
    sys.exit(main())
