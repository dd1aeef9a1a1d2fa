"""The first thing to run when a GPU is lent (``make gpu-check``): every GPU figure of the project in one go.

Writes ``reports/gpu/<stage>.json`` for each stage and ``reports/gpu/summary.md`` (device, versions, figures and
the goals marked pass / FAIL), in at most ``--budget-s`` seconds (8 minutes) on an H200:

- ``folder``: the random-weight SD1.5 InstructPix2Pix folder (``mredit.models.random_init``), written to a
  temporary directory; every later stage loads its components from it with ``from_pretrained``;
- ``train_precomputed``, ``train_online``: bf16 training at 256 px, batch 32 (``Trainer.fit``, AdamW, EMA,
  clipping) from precomputed latents and with the VAE and CLIP encoders in the step: images/s, MFU, peak memory,
  and the plain PyTorch loop doing the same step;
- ``train_rewards``: ``train_precomputed`` with the official reward conditioner attached (rewards on vs off);
- ``train_compiled``: ``train_precomputed`` with ``compile_unet`` (``torch.compile``, inductor; on vs off);
- ``sample``: seconds per image at 512 px, 20 Euler-ancestral steps, fp16, diffusers'
  ``StableDiffusionInstructPix2PixPipeline`` vs ``RewardEditPipeline`` with rewards off and on.

Each stage runs in a forked child process with its own time box (and whatever is left of the budget): a stage that
fails (CUDA out of memory included) or overruns records that in its JSON, and the next stage runs. The functions
measured are those of ``train_step.py`` and ``sample.py``. ``--dry-run`` runs the same stages on the CPU at tiny
size (the tiny layout of the same folder, batch 2 at 64 px, 2 steps; compile backend ``eager``) in seconds, so the
script is tested without a GPU.

    python benchmarks/gpu_check.py                 # on the GPU (make gpu-check)
    python benchmarks/gpu_check.py --dry-run       # anywhere (make gpu-check ARGS=--dry-run)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from harness import environment, peak_tflops
from sample import ARMS, sampling_arms, seconds_per_image
from train_step import build_module, flops_per_sample, lightning_run, plain_run, training_batch

from mredit.models.components import load_pretrained_components
from mredit.models.random_init import init_random, parameter_counts

MFU_GOAL, SAMPLER_GOAL, REWARDS_GOAL = 0.40, 1.05, 1.05
MODEL_SUBFOLDER = "model"


@dataclass
class Settings:
    """What the stages run at: the real check, or (``dry_run``) the same stages at tiny size on the CPU."""

    dry_run: bool
    device: str
    batch_size: int
    resolution: int
    steps: int
    warmup: int
    sample_resolution: int
    sample_steps: int
    sample_repeats: int
    compile_backend: str
    peak_tflops: float | None

    @classmethod
    def for_run(cls, dry_run: bool, peak: float | None) -> Settings:
        if dry_run:
            return cls(True, "cpu", 2, 64, 2, 1, 64, 2, 1, "eager", peak)
        return cls(False, "cuda", 32, 256, 15, 3, 512, 20, 3, "inductor", peak)


# ---- the stages (each runs in its own forked process and returns its figures) --------------------------------
def stage_folder(folder: Path, settings: Settings) -> dict[str, Any]:
    start = time.perf_counter()
    init_random("sd15-ip2p", folder, tiny=settings.dry_run)
    on_disk = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return {
        "tiny": settings.dry_run,
        "parameters": parameter_counts("sd15-ip2p", tiny=settings.dry_run),
        "gib_on_disk": on_disk / 2**30,
        "write_seconds": time.perf_counter() - start,
    }


def train_stage(
    folder: Path, settings: Settings, precomputed: bool, rewards: bool = False, compiled: bool = False
) -> dict[str, Any]:
    gpu = settings.device == "cuda"
    inductor = compiled and settings.compile_backend == "inductor"
    module = build_module(str(folder), compile_unet=inductor, rewards=rewards)
    if compiled and not inductor:  # what compile_unet does (in place), with the dry run's cheap backend
        module.unet.compile(backend=settings.compile_backend)
    module.to(settings.device)
    batch = training_batch(module, settings.batch_size, settings.resolution, precomputed)
    flops = flops_per_sample(module, batch)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    lightning = lightning_run(module, batch, settings.steps, settings.warmup, gpu)
    peak_memory = torch.cuda.max_memory_allocated() / 2**30 if gpu else None
    plain = plain_run(module, batch, settings.steps, settings.warmup, gpu)
    peak = peak_tflops(settings.device, settings.peak_tflops)
    return {
        "precomputed": precomputed,
        "rewards": rewards,
        "compile": settings.compile_backend if compiled else None,
        "batch_size": settings.batch_size,
        "resolution": settings.resolution,
        "precision": "bf16-mixed" if gpu else "32-true",
        "timed_steps": settings.steps,
        "images_per_s": lightning.images_per_second,
        "plain_images_per_s": plain.images_per_second,
        "lightning_over_plain": lightning.images_per_second / plain.images_per_second,
        "warmup_seconds": lightning.warmup_seconds,
        "flops_per_sample_gf": flops / 1e9,
        "peak_tflops": peak,
        "mfu": None if peak is None else lightning.images_per_second * flops / (peak * 1e12),
        "peak_memory_gib": peak_memory,
    }


def stage_sample(folder: Path, settings: Settings) -> dict[str, Any]:
    dtype = torch.float16 if settings.device == "cuda" else torch.float32
    parts = load_pretrained_components(str(folder))
    arms = sampling_arms(parts, settings.device, dtype, settings.sample_resolution, settings.sample_steps, 1)
    with torch.inference_mode():
        seconds = seconds_per_image(arms, settings.sample_repeats, 1, settings.device)
    return {
        "resolution": settings.sample_resolution,
        "steps": settings.sample_steps,
        "dtype": str(dtype).removeprefix("torch."),
        "repeats": settings.sample_repeats,
        "seconds_per_image": seconds,
        "ours_over_stock": seconds[ARMS[1]] / seconds[ARMS[0]],
        "rewards_on_over_off": seconds[ARMS[2]] / seconds[ARMS[1]],
    }


@dataclass(frozen=True)
class Stage:
    name: str
    box_seconds: float  # its own time limit on the GPU (the budget's remainder caps it too)
    run: Callable[[Path, Settings], dict[str, Any]]


DRY_RUN_BOX_SCALE = 10
# the order puts the goals first: what a short budget leaves out is the least needed
STAGES = (
    Stage("folder", 120, stage_folder),
    Stage("train_precomputed", 75, lambda f, s: train_stage(f, s, precomputed=True)),
    Stage("sample", 75, stage_sample),
    Stage("train_online", 75, lambda f, s: train_stage(f, s, precomputed=False)),
    Stage("train_rewards", 75, lambda f, s: train_stage(f, s, precomputed=True, rewards=True)),
    Stage("train_compiled", 240, lambda f, s: train_stage(f, s, precomputed=True, compiled=True)),
)
MIN_STAGE_SECONDS = 15


# ---- running a stage in a child process ----------------------------------------------------------------------
def write_record(path: Path, record: dict[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=2) + "\n")


def _child(name: str, run: Callable[[], dict[str, Any]], path: Path, device: str) -> None:
    os.setpgid(0, 0)  # its own process group: a timeout ends it together with its compile workers
    start = time.perf_counter()
    record: dict[str, Any] = {"stage": name, "status": "ok", "error": None}
    try:
        record["environment"] = environment(device)
        record.update(run())
    except BaseException as error:  # out of memory included: the record says so and the next stage runs
        record.update(status="error", error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
    record["seconds"] = time.perf_counter() - start
    write_record(path, record)
    sys.stdout.flush()
    os._exit(0 if record["status"] == "ok" else 1)


def run_stage(name: str, run: Callable[[], dict[str, Any]], timeout: float, out_dir: Path, device: str) -> dict:
    """Run ``run`` in a forked child limited to ``timeout`` seconds; returns the stage's record (also written to
    ``out_dir/<name>.json``), with status ``ok``, ``error`` or ``timeout``."""
    path = out_dir / f"{name}.json"
    path.unlink(missing_ok=True)
    start = time.perf_counter()
    process = multiprocessing.get_context("fork").Process(target=_child, args=(name, run, path, device))
    process.start()
    process.join(timeout)
    if process.is_alive():
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # killed before it made its group
            process.kill()
        process.join()
        write_record(path, _failed(name, "timeout", f"over its {timeout:.0f} s limit", start))
    elif not path.exists():  # killed from outside (the OOM killer) or crashed in native code
        write_record(path, _failed(name, "error", f"the stage process died (exit code {process.exitcode})", start))
    return json.loads(path.read_text())


def cuda_available() -> bool:
    """``torch.cuda.is_available()`` asked in a forked child: CUDA must stay uninitialised in this process, which
    forks the stages (a child cannot use a CUDA context its parent made)."""
    process = multiprocessing.get_context("fork").Process(target=lambda: os._exit(int(not torch.cuda.is_available())))
    process.start()
    process.join()
    return process.exitcode == 0


def _failed(name: str, status: str, error: str, start: float) -> dict[str, Any]:
    return {"stage": name, "status": status, "error": error, "seconds": time.perf_counter() - start}


def run_check(settings: Settings, out_dir: Path, budget: float, work_dir: str | None = None) -> dict[str, dict]:
    """All stages in order within ``budget`` seconds; writes their JSON and ``summary.md``; returns the records."""
    out_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + budget
    records: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="mredit-gpu-check-", dir=work_dir) as scratch:
        folder = Path(scratch) / MODEL_SUBFOLDER
        for stage in STAGES:
            left = deadline - time.perf_counter()
            if left < MIN_STAGE_SECONDS:
                record = _failed(stage.name, "skipped", f"time budget spent ({budget:.0f} s)", time.perf_counter())
                write_record(out_dir / f"{stage.name}.json", record)
            elif stage.name != "folder" and records["folder"]["status"] != "ok":
                record = _failed(stage.name, "skipped", "no model folder: the folder stage failed", time.perf_counter())
                write_record(out_dir / f"{stage.name}.json", record)
            else:
                # the boxes are sized for the GPU; a dry run checks the wiring on a CPU that may be busy, not its speed
                box = stage.box_seconds * (DRY_RUN_BOX_SCALE if settings.dry_run else 1)
                print(f"[gpu-check] {stage.name} (limit {min(box, left):.0f} s)", flush=True)
                run = lambda stage=stage: stage.run(folder, settings)  # noqa: E731
                record = run_stage(stage.name, run, min(box, left), out_dir, settings.device)
            records[stage.name] = record
            print(f"[gpu-check] {stage.name}: {record['status']} in {record['seconds']:.1f} s", flush=True)
            if record["error"]:
                print(f"[gpu-check]   {record['error']}", flush=True)
    (out_dir / "summary.md").write_text(summary_markdown(records, settings))
    return records


# ---- the summary ---------------------------------------------------------------------------------------------
def _num(value: float | None, spec: str = ".1f", scale: float = 1.0, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value * scale:{spec}}{suffix}"


def _goal(value: float | None, ok: Callable[[float], bool]) -> str:
    return "n/a" if value is None else ("pass" if ok(value) else "**FAIL**")


def _ok(records: dict[str, dict], name: str) -> dict | None:
    record = records.get(name)
    return record if record and record["status"] == "ok" else None


def _ratio(numerator: dict | None, denominator: dict | None, key: str) -> float | None:
    if numerator is None or denominator is None:
        return None
    return numerator[key] / denominator[key]


def summary_markdown(records: dict[str, dict], settings: Settings) -> str:
    env = next((r["environment"] for r in records.values() if r.get("environment")), {})
    lines = ["# GPU check", ""]
    if settings.dry_run:
        lines += ["**Dry run**: the tiny model on the CPU. The figures test the script, they measure nothing.", ""]
    lines += [
        f"Device: {env.get('device', 'unknown')}; torch {env.get('torch')} (CUDA {env.get('cuda')}), diffusers "
        f"{env.get('diffusers')}, lightning {env.get('lightning')}, Python {env.get('python')}.",
        "",
        "| stage | status | seconds | error |",
        "|---|---|---|---|",
    ]
    lines += [f"| {n} | {r['status']} | {r['seconds']:.1f} | {r['error'] or ''} |" for n, r in records.items()]
    trains = [(n, r) for n, r in records.items() if n.startswith("train_") and r["status"] == "ok"]
    if trains:
        first = trains[0][1]
        lines += [
            "",
            f"Training, batch {first['batch_size']} at {first['resolution']} px, {first['precision']}, "
            f"{first['timed_steps']} timed steps (Lightning `Trainer.fit`; plain: the same step by hand):",
            "",
            "| stage | images/s | plain images/s | Lightning / plain | GFLOPs/sample | MFU | peak memory GiB |"
            " warm-up s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {n} | {r['images_per_s']:.2f} | {r['plain_images_per_s']:.2f} | {r['lightning_over_plain']:.3f} | "
            f"{r['flops_per_sample_gf']:.2f} | {_num(r['mfu'], '.1f', 100, ' %')} | {_num(r['peak_memory_gib'], '.2f')}"
            f" | {r['warmup_seconds']:.1f} |"
            for n, r in trains
        ]
    sample = _ok(records, "sample")
    if sample:
        lines += [
            "",
            f"Sampling, {sample['resolution']} px, {sample['steps']} Euler-ancestral steps, 3-way guidance, "
            f"{sample['dtype']}, median of {sample['repeats']}:",
            "",
            "| arm | seconds/image |",
            "|---|---|",
        ]
        lines += [f"| {arm} | {seconds:.4f} |" for arm, seconds in sample["seconds_per_image"].items()]
    precomputed = _ok(records, "train_precomputed")
    mfus = [r["mfu"] for r in (precomputed, _ok(records, "train_compiled")) if r and r["mfu"] is not None]
    best_mfu = max(mfus) if mfus else None
    compile_ratio = _ratio(_ok(records, "train_compiled"), precomputed, "images_per_s")
    rewards_train = _ratio(_ok(records, "train_rewards"), precomputed, "images_per_s")
    sampler = sample["ours_over_stock"] if sample else None
    rewards_sample = sample["rewards_on_over_off"] if sample else None
    lines += [
        "",
        "| comparison | value | goal | verdict |",
        "|---|---|---|---|",
        f"| MFU with precomputed latents (best of eager and compiled) | {_num(best_mfu, '.1f', 100, ' %')} | "
        f">= {MFU_GOAL:.0%} | {_goal(best_mfu, lambda v: v >= MFU_GOAL)} |",
        f"| sampler time, ours (rewards off) / stock diffusers | {_num(sampler, '.3f')} | <= {SAMPLER_GOAL} | "
        f"{_goal(sampler, lambda v: v <= SAMPLER_GOAL)} |",
        f"| sampler time, rewards on / off | {_num(rewards_sample, '.3f')} | <= {REWARDS_GOAL} | "
        f"{_goal(rewards_sample, lambda v: v <= REWARDS_GOAL)} |",
        f"| training images/s, torch.compile on / off (precomputed) | {_num(compile_ratio, '.3f')} | - | - |",
        f"| training images/s, rewards on / off (precomputed) | {_num(rewards_train, '.3f')} | - | - |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the same stages on the CPU at tiny size")
    parser.add_argument("--out", type=Path, default=Path("reports/gpu"), help="where the JSON and summary go")
    parser.add_argument("--budget-s", type=float, default=480.0, help="the whole check's time limit in seconds")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak (default: by GPU name)")
    parser.add_argument("--work-dir", default=None, help="where the temporary model folder goes (4.3 GB)")
    args = parser.parse_args()
    torch.set_float32_matmul_precision("high")
    if not args.dry_run and not cuda_available():
        raise SystemExit("gpu_check: no CUDA device here; --dry-run runs the stages on the CPU at tiny size")
    settings = Settings.for_run(args.dry_run, args.peak_tflops)
    start = time.perf_counter()
    records = run_check(settings, args.out, args.budget_s, args.work_dir)
    print((args.out / "summary.md").read_text())
    failed = [name for name, record in records.items() if record["status"] != "ok"]
    print(
        f"[gpu-check] {len(records) - len(failed)}/{len(records)} stages ok in {time.perf_counter() - start:.0f} s;"
        f" wrote {args.out}/*.json and summary.md"
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
