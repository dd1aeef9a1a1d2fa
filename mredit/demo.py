"""``make demo``: the paper's claim on the synthetic world, on a CPU, in minutes.

1. synthesise a corrupted training set and a clean test set balanced over the seven edit categories;
2. annotate the training rewards with the oracle judge (``mredit judge annotate``) and join them into the shards
   (``mredit data convert --from shards --rewards``);
3. train the tiny InstructPix2Pix baseline and the tiny reward-conditioned model with the same data, seed and
   steps, side by side (one process and one thread each);
4. edit the test set with both (the reward model at rewards (5, 5, 5)) into ``<out>/edits/<model>/<key>.png``;
5. judge both with the oracle (``mredit judge eval``) and write ``<out>/results.json``, ``results.md`` (overall and
   per category), ``grid.png`` (source | target | baseline | reward) and ``bars.png``; print the table.
   As a controllability check the reward model also edits at rewards (0, 0, 0) (``edits/reward_at_0``).

``python -m mredit.demo --fast`` runs the same pipeline at a few steps (the CI test).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mredit import jobs, workflow
from mredit.reports import format_category_table, format_overall_table, save_comparison_grid, save_metric_bars
from mredit.schema import PERSPECTIVES
from mredit.workflow import DataSpec, EditSpec, TrainSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS = ("baseline", "reward")
BASELINE_CONFIG = REPO_ROOT / "configs" / "insp2p_tiny.yaml"
REWARD_CONFIG = REPO_ROOT / "configs" / "insp2p_reward_tiny.yaml"
BEST, WORST = (5.0, 5.0, 5.0), (0.0, 0.0, 0.0)
LOW_REWARD_RUN = "reward_at_0"
RESULT_KEYS = ("yes_rate", "score", "yes_rate_ci", "score_ci", "n")
# Full demo budget, measured with the tiny recipe (x0 on edit residuals, text encoder trained) at 16 px: side by
# side on two cores, one thread each, the two models train at about 2.8-3.2 steps/s at batch 32, so 2,000 steps
# take about 11-12 minutes; data, editing and judging add about 2.5. With `make install` that stays under 20.
DEFAULTS = {"num_train": 8000, "num_test": 140, "resolution": 16, "steps": 2000, "batch_size": 32, "edit_steps": 25}
FAST = {"num_train": 64, "num_test": 14, "resolution": 16, "steps": 4, "batch_size": 8, "edit_steps": 2}


def _grid_rows(test_shards: Path, out: Path, per_category: int = 2) -> list[tuple[str, list]]:
    """Up to ``per_category`` test samples of each category: source | target | baseline | reward."""
    import webdataset as wds
    from PIL import Image

    from mredit.data.shards import shard_paths
    from mredit.schema import SampleError, decode_sample

    rows, seen = [], {}
    for raw in wds.WebDataset(shard_paths(test_shards), shardshuffle=False, empty_check=False):
        try:
            sample = decode_sample(raw)
        except SampleError:
            continue
        category = sample.meta.get("category", "?")
        edits = [out / "edits" / model / f"{sample.key}.png" for model in MODELS]
        if seen.get(category, 0) >= per_category or not all(p.exists() for p in edits):
            continue
        seen[category] = seen.get(category, 0) + 1
        rows.append((f"{category}: {sample.instruction}", [sample.source, sample.target, *map(Image.open, edits)]))
    return sorted(rows, key=lambda row: row[0].split(":")[0])


def _summary(results: dict) -> dict:
    return {p: {k: results[p][k] for k in RESULT_KEYS if k in results[p]} for p in PERSPECTIVES}


def run_demo(
    out: Path,
    num_train: int,
    num_test: int,
    resolution: int,
    steps: int,
    batch_size: int,
    edit_steps: int,
    seed: int = 0,
    parallel: int = 2,
) -> dict:
    start = time.time()
    timings: dict[str, float] = {}
    out.mkdir(parents=True, exist_ok=True)
    data = workflow.prepare_data(
        out / "data", DataSpec(num_train=num_train, num_test=num_test, resolution=resolution, seed=seed)
    )
    timings["data"] = time.time() - start
    # the two configs differ only by the RewardConditioning callback; everything else is set identically here
    specs = {
        name: TrainSpec(name, [str(config)], out / "runs" / name, steps, seed, batch_size, resolution=resolution)
        for name, config in (("baseline", BASELINE_CONFIG), ("reward", REWARD_CONFIG))
    }
    train_jobs = [job for spec in specs.values() if (job := workflow.training_job(spec, data.train))]
    if train_jobs:
        print(f"training {len(train_jobs)} model(s), {steps} steps at batch {batch_size}, side by side", flush=True)
        jobs.run_jobs(train_jobs, max_parallel=parallel)
    timings["training"] = time.time() - start - sum(timings.values())
    # (edits dir, model, rewards): the reward model is also run at the worst rewards, which should undo its edits
    editions = [("baseline", "baseline", BEST), ("reward", "reward", BEST), (LOW_REWARD_RUN, "reward", WORST)]
    edit_jobs = []
    for name, model, scores in editions:
        checkpoint, edits = workflow.checkpoint_path(specs[model]), out / "edits" / name
        edit_spec = EditSpec(steps=edit_steps, seed=seed, scores=scores)
        if not workflow.edits_done(edits, checkpoint, edit_spec, resolution):
            edit_jobs.append(workflow.edit_job(name, checkpoint, data.test, edits, edit_spec, resolution))
    if edit_jobs:
        names = ", ".join(job.name.removeprefix("edit ") for job in edit_jobs)
        print(f"editing the {num_test} test images, {parallel} models at a time: {names}", flush=True)
        jobs.run_jobs(edit_jobs, max_parallel=parallel)
    timings["editing"] = time.time() - start - sum(timings.values())
    print("judging the edits with the oracle", flush=True)
    evaluations = {
        name: workflow.evaluate(out / "edits" / name, data.test, out / "eval" / name) for name, *_ in editions
    }
    timings["judging"] = time.time() - start - sum(timings.values())
    results = {name: _summary(evaluations[name]["overall"]) for name in MODELS}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    overall = format_overall_table(results)
    per_category = format_category_table({name: evaluations[name]["per_category"] for name in MODELS})
    control = format_overall_table(
        {
            "reward at (5, 5, 5)": results["reward"],
            "reward at (0, 0, 0)": _summary(evaluations[LOW_REWARD_RUN]["overall"]),
        }
    )
    minutes = (time.time() - start) / 60
    stages = ", ".join(f"{stage} {seconds / 60:.1f}" for stage, seconds in timings.items())
    budget = f"{num_train} training triplets, {steps} steps at batch {batch_size}, {resolution} px, seed {seed}"
    (out / "results.md").write_text(
        f"# Demo results\n\n{budget}; {num_test} clean test edits judged by the oracle; "
        f"{minutes:.1f} min ({stages}).\n\n"
        f"## Overall\n\n{overall}\n\n## Per category\n\n{per_category}\n\n"
        f"## Controllability\n\nThe reward model asked for the worst rewards should edit less (lower following) "
        f"than at the best rewards.\n\n{control}\n\n![grid](grid.png)\n\n![bars](bars.png)\n"
    )
    save_comparison_grid(_grid_rows(data.test, out), ("source", "target", "baseline", "reward"), out / "grid.png")
    save_metric_bars(results, out / "bars.png", title="oracle judge on the synthetic test set")
    print(f"\n{overall}\n\n{budget}; {minutes:.1f} min. Reports in {out}/ (results.md, grid.png, bars.png)")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mredit.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="reports/demo", help="output directory (default reports/demo)")
    parser.add_argument("--fast", action="store_true", help="a few steps on a few samples (CI smoke test)")
    parser.add_argument("--num-train", type=int, help=f"training triplets (default {DEFAULTS['num_train']})")
    parser.add_argument("--num-test", type=int, help=f"test edits, 7 categories (default {DEFAULTS['num_test']})")
    parser.add_argument("--resolution", type=int, help=f"image side, 16 or 32 (default {DEFAULTS['resolution']})")
    parser.add_argument("--steps", type=int, help=f"training steps per model (default {DEFAULTS['steps']})")
    parser.add_argument("--batch-size", type=int, help=f"training batch size (default {DEFAULTS['batch_size']})")
    parser.add_argument("--edit-steps", type=int, help=f"sampling steps (default {DEFAULTS['edit_steps']})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=2, help="models trained side by side (default 2)")
    args = parser.parse_args(argv)
    settings = dict(FAST if args.fast else DEFAULTS)
    settings.update({k: v for k in settings if (v := getattr(args, k)) is not None})
    try:
        run_demo(Path(args.out), seed=args.seed, parallel=args.parallel, **settings)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"mredit.demo: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
