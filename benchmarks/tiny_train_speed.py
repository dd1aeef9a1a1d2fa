"""Training speed of the demo's tiny models, old against new, measured back to back in one run.

Each arm runs ``mredit fit`` exactly as ``make demo`` does (``mredit.lab.workflow.train_command``: one process,
one thread, batch 32 at 16 px, the demo's callbacks and checkpoints) on the same synthetic data (each arm
reading shards written by its own code), with a
callback that timestamps every optimizer step; the first ``--warmup`` steps are not counted. The arms:

- ``old``: the code and tiny configs of ``--old-ref`` (a git commit: the tree before the speed-up), extracted
  with ``git archive`` and put first on ``PYTHONPATH``;
- ``old_config``: today's code with ``--old-ref``'s configs (old values, new code paths: what the code changes
  alone bring; they leave the math the same to 1e-6);
- ``new``: today's code and configs.

The arms alternate ``--repeats`` times, so that load on a shared machine hits all of them; the figures are
medians. Steps/s is given per wall second and per CPU second of the training process (its
``time.process_time``; less sensitive to other processes on the machine), and the ratio new / old of each::

    python benchmarks/tiny_train_speed.py                          # reward model, old vs new, 3 repeats
    python benchmarks/tiny_train_speed.py --models baseline reward --arms old old_config new --cpu 1

``--profile`` times the parts of one step instead (CPU time of the training thread, median over ``--steps``
steps), with the module's own methods timed in place, so each arm profiles its own code path: data (read,
decode, collate), autoencoder, text encoder, reward condition (feedback encoding and conditioner), UNet
forward, the rest of the loss, backward, gradient clipping, AdamW, EMA. What ``mredit fit`` adds on top
(Lightning's loop, logging, callbacks, checkpoints every 50 steps) is its step time minus this sum.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl

REPO = Path(__file__).resolve().parents[1]
OLD_REF = "30f530f"  # the last commit before the tiny-training speed-up (issue 21)
CONFIGS = {"baseline": "configs/ip2p_tiny.yaml", "reward": "configs/ip2p_reward_tiny.yaml"}
ARMS = ("old", "old_config", "new")


class StepClock(pl.Callback):
    """Appends ``[wall, cpu]`` seconds after every training batch and writes them as JSON when training ends
    (imported by the ``mredit fit`` child through ``PYTHONPATH``; this module imports nothing from mredit at
    the top, so the old code's child can load it too)."""

    def __init__(self, out: str) -> None:
        self.out, self.stamps = out, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.stamps.append((time.perf_counter(), time.process_time()))

    def on_train_end(self, trainer, pl_module) -> None:
        Path(self.out).write_text(json.dumps(self.stamps))


PARTS = (
    "data: read, decode, collate",
    "autoencoder encode",
    "text encoder forward (instructions, null text)",
    "reward condition (feedback encoding, conditioner)",
    "UNet forward",
    "noise, dropout, loss (rest of the loss)",
    "backward",
    "gradient clipping",
    "AdamW step",
    "EMA update",
)


def profile_step(config: str, shards: str, steps: int, warmup: int) -> dict[str, float]:
    """Median CPU seconds of each part of a training step (``PARTS``) of ``config``'s model at the demo's
    settings, and their ``total``; runs in the child of ``--profile`` (old or new code alike)."""
    import torch
    import yaml

    from mredit.data.datamodule import EditDataModule
    from mredit.models.ip2p import InstructPix2PixModule

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config_values = yaml.safe_load(Path(config).read_text())
    module = InstructPix2PixModule(**config_values["model"]["init_args"])
    for callback in config_values["trainer"].get("callbacks", []):
        if callback["class_path"].endswith("RewardConditioning"):
            from mredit.callbacks.reward_conditioning import RewardConditioning

            RewardConditioning(**callback.get("init_args", {})).setup(None, module, "fit")
    module.train()
    data_values = {**config_values["data"]["init_args"], "train_shards": shards, "val_shards": None}
    data = EditDataModule(**{**data_values, "batch_size": 32, "resolution": 16, "num_workers": 0, "seed": 0})
    data.setup("fit")
    batches = iter(data.train_dataloader())
    params = [p for _, p in module.trainable_named_parameters()]
    optimizer = module.configure_optimizers()["optimizer"]
    spent = dict.fromkeys(PARTS, 0.0)

    def timed(owner, name: str, part: str) -> None:
        method = getattr(owner, name)

        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            start = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent[part] += time.thread_time() - start

        setattr(owner, name, wrapper)

    timed(module, "_latents", PARTS[1])
    timed(module, "encode_instructions", PARTS[2])
    timed(module, "compute_reward_condition", PARTS[3])
    timed(module.unet, "forward", PARTS[4])
    samples: dict[str, list[float]] = {part: [] for part in (*PARTS, "total")}
    for step in range(warmup + steps):
        spent.update(dict.fromkeys(PARTS, 0.0))
        start = clock = time.thread_time()

        def lap(part: str) -> None:
            nonlocal clock
            now = time.thread_time()
            spent[part] += now - clock
            clock = now

        batch = next(batches)
        lap(PARTS[0])
        loss = module.diffusion_loss(batch)
        inner = sum(spent[part] for part in PARTS[1:5])
        lap(PARTS[5])
        spent[PARTS[5]] -= inner
        loss.backward()
        lap(PARTS[6])
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        lap(PARTS[7])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lap(PARTS[8])
        module.ema.update(module.trainable_named_parameters())
        lap(PARTS[9])
        if step >= warmup:
            for part in PARTS:
                samples[part].append(spent[part])
            samples["total"].append(time.thread_time() - start)
    return {part: statistics.median(values) for part, values in samples.items()}


def run_profile(arm: str, model: str, shards: Path, old_tree: Path | None, args: argparse.Namespace) -> dict:
    from mredit.lab.jobs import child_env

    config_root = REPO if arm == "new" else old_tree
    argv = [sys.executable, __file__, "--profile-child", str(config_root / CONFIGS[model]), "--shards", str(shards)]
    argv += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.cpu is not None:
        argv = ["taskset", "-c", str(args.cpu), *argv]
    paths = [str(old_tree)] if arm == "old" else []
    env = {**child_env(), "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"profile of {arm} {model} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def print_profiles(profiles: dict[tuple[str, str], list[dict]], arms: list[str], model: str, repeats: int) -> None:
    print(f"\n{model}: CPU ms per step by part (median over steps, then over {repeats} runs)")
    print("| part | " + " | ".join(arms) + " |")
    print("|---|" + "---|" * len(arms))
    for part in (*PARTS, "total"):
        cells = []
        for arm in arms:
            runs = profiles[model, arm]
            value = statistics.median(run[part] for run in runs) * 1000
            total = statistics.median(run["total"] for run in runs) * 1000
            cells.append(f"{value:.1f} ({100 * value / total:.0f} %)")
        print(f"| {part} | " + " | ".join(cells) + " |")


def extract_old_tree(ref: str, into: Path) -> Path:
    """``mredit/`` and ``configs/`` of ``ref`` (read with ``git archive``; the repository is not touched)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "mredit", "configs"], capture_output=True, check=False
    )
    if archive.returncode:
        message = archive.stderr.decode(errors="replace").strip()
        raise SystemExit(f"cannot read --old-ref {ref} ({message}): pass another commit or --arms old_config new")
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def prepare_shards(work: Path, num_train: int, code: Path | None = None) -> Path:
    """The demo's training data (16 px, half flawed, oracle rewards joined), made once in ``work`` by the code of
    ``code`` (an extracted old tree; None: today's), so that each arm reads the shards its own writer makes."""
    out = work / f"data_n{num_train}" if code is None else code.parent / f"{code.name}_data_n{num_train}"
    make = (
        "import sys; from pathlib import Path; from mredit.lab.workflow import DataSpec, prepare_data; "
        f"prepare_data(Path({str(out)!r}), DataSpec(num_train={num_train}, num_test=14, resolution=16))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code or REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", make], env=env, check=True)
    return out / "train"


def run_arm(arm: str, model: str, shards: Path, old_tree: Path | None, args: argparse.Namespace, run_dir: Path):
    """One ``mredit fit`` of ``warmup + steps`` steps; returns (wall s/step, cpu s/step) over the timed steps."""
    from mredit.lab.jobs import child_env
    from mredit.lab.workflow import TrainSpec, train_command

    config_root = REPO if arm == "new" else old_tree
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    max_steps = args.warmup + args.steps
    spec = TrainSpec(model, [str(config_root / CONFIGS[model])], run_dir, max_steps, 0, 32, resolution=16)
    stamps = run_dir / "stamps.json"
    clock = {"class_path": f"{Path(__file__).stem}.StepClock", "init_args": {"out": str(stamps)}}
    argv = [*train_command(spec, shards), "--trainer.callbacks+=" + json.dumps(clock)]
    if args.cpu is not None:
        argv = ["taskset", "-c", str(args.cpu), *argv]
    paths = [str(Path(__file__).parent)] + ([str(old_tree)] if arm == "old" else [])
    env = {**child_env(), "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=run_dir)
    if result.returncode:
        raise SystemExit(f"{arm} {model} failed:\n{result.stderr[-3000:]}")
    times = json.loads(stamps.read_text())[args.warmup - 1 :]
    wall, cpu = (times[-1][i] - times[0][i] for i in (0, 1))
    return wall / args.steps, cpu / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=["reward"])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=["old", "new"])
    parser.add_argument("--old-ref", default=OLD_REF, help="git commit whose code and configs are 'old'")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per run (two checkpoints per 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="alternate the arms this many times")
    parser.add_argument("--num-train", type=int, default=2000, help="training triplets of the shards")
    parser.add_argument("--cpu", type=int, default=None, help="pin every run to this core (taskset -c)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mredit_tiny_train_speed")
    parser.add_argument("--profile", action="store_true", help="time the parts of a step instead (see above)")
    parser.add_argument("--profile-child", help=argparse.SUPPRESS)  # a config: print its profile as JSON
    parser.add_argument("--shards", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        raise SystemExit("--warmup and --steps must be >= 1")
    if args.profile_child:
        print(json.dumps(profile_step(args.profile_child, args.shards, args.steps, args.warmup)))
        return
    old_tree = None
    if set(args.arms) & {"old", "old_config"}:
        old_tree = extract_old_tree(args.old_ref, args.work / f"old_{args.old_ref}")
    # each arm reads shards written by its own code (the shard writer changed: no PAX header per tar member)
    shards = {arm: prepare_shards(args.work, args.num_train, old_tree if arm == "old" else None) for arm in args.arms}
    if args.profile:
        profiles: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.repeats):
            for model in args.models:
                for arm in args.arms:
                    profiles.setdefault((model, arm), []).append(run_profile(arm, model, shards[arm], old_tree, args))
        for model in args.models:
            print_profiles(profiles, args.arms, model, args.repeats)
        return
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for repeat in range(args.repeats):
        for model in args.models:
            for arm in args.arms:
                step = run_arm(arm, model, shards[arm], old_tree, args, args.work / "runs" / f"{model}_{arm}")
                results.setdefault((model, arm), []).append(step)
                print(
                    f"repeat {repeat + 1}: {model} {arm}: {1 / step[0]:.2f} steps/s wall, {1 / step[1]:.2f} per CPU s"
                )
    print(
        f"\nmedian of {args.repeats} runs, {args.steps} steps each after {args.warmup}, batch 32 at 16 px, one thread"
    )
    print("| model | arm | steps/s (wall) | steps/s (CPU time) | ms/step (CPU) |")
    print("|---|---|---|---|---|")
    medians = {}
    for (model, arm), steps in results.items():
        wall, cpu = (statistics.median(s[i] for s in steps) for i in (0, 1))
        medians[model, arm] = (wall, cpu)
        print(f"| {model} | {arm} | {1 / wall:.2f} | {1 / cpu:.2f} | {cpu * 1000:.0f} |")
    reference = args.arms[0]
    for model in args.models:
        for arm in args.arms[1:]:
            (old_wall, old_cpu), (wall, cpu) = medians[model, reference], medians[model, arm]
            print(f"{model}: {arm} / {reference} = {old_wall / wall:.2f}x (wall), {old_cpu / cpu:.2f}x (CPU time)")


if __name__ == "__main__":
    sys.exit(main())
