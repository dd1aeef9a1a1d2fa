"""The real configs at real size on a CPU, on random-weight folders of the real checkpoints (docs/real_size.md).

Each stage runs in a child process; its wall time and peak resident memory (``os.wait4``) are printed, and
``mredit fit`` stages also print the time and RSS of every optimizer step (the ``StepTimer`` callback below).

1. ``folders``: ``mredit init-random`` sd15, sd15-ip2p and llava-smartedit ``--layers N`` (kept when present).
2. ``ip2p``, ``ip2p_reward_official``, ``ip2p_reward_paper``: ``mredit fit`` of configs/ip2p.yaml (from the sd15
   folder) and configs/ip2p_reward.yaml (from the sd15-ip2p folder, both reward conditioners) for 2 optimizer
   steps at 256 px, batch 1; ``mredit export`` of the last checkpoint; stock diffusers'
   ``StableDiffusionInstructPix2PixPipeline`` loads the export and edits a 256 px image.
3. ``official_import``: a folder in the released Reward-InsPix2Pix layout (the sd15-ip2p UNet plus the 34 reward
   tensors at their released shapes) through ``mredit import official``; the conditioner it writes must hold the
   documented 5,026,880 parameters.
4. ``smartedit_reward``: ``mredit fit`` of configs/smartedit_reward.yaml, 1 step, LLaVA-7B widths with the first
   N LLaMA layers.

The configs are run as written except for ``CPU_OVERRIDES`` (printed per run): the CPU instead of GPUs/DDP, the
precision (bf16-mixed where the CPU has native bf16, else 32-true; the SmartEdit LLM's dtype follows), the run
length, batch 1 on synthetic 256 px shards, CSV logging, and a checkpoint at the last step.

    python benchmarks/real_size_cpu.py --work /tmp/mredit_real_size            # about 20-40 min on 2 cores
    python benchmarks/real_size_cpu.py --work /tmp/x --tiny                     # the same stages at tiny widths
    python benchmarks/real_size_cpu.py --stages ip2p official_import --ema off  # a subset; ip2p without EMA

Needs about 20 GiB of free memory (check ``free -g``; the script refuses a stage when less is available than its
``--min_free_gib``) and about 25 GiB of disk under ``--work``; checkpoints and exports are deleted after use
unless ``--keep``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

REPO = Path(__file__).resolve().parents[1]
MREDIT = [sys.executable, "-m", "mredit"]
STAGES = ("folders", "ip2p", "ip2p_reward_official", "ip2p_reward_paper", "official_import", "smartedit_reward")
FIT_STAGES = {  # stage -> (config, reward variant)
    "ip2p": ("ip2p", None),
    "ip2p_reward_official": ("ip2p_reward", "official"),
    "ip2p_reward_paper": ("ip2p_reward", "paper"),
    "smartedit_reward": ("smartedit_reward", None),
}
EDIT_INSTRUCTION = "make the sky purple"
GIB = 1024**3


# ---- the callback the fit children load (PYTHONPATH holds this folder) -----------------------------------------
class StepTimer(pl.Callback):
    """Writes ``{"steps": [{"step", "seconds", "cpu_seconds", "rss_gib"}], "global_step"}`` to ``out`` at the end
    of training: the wall and CPU time (all threads: what the step costs, whatever else shares the machine) of every
    training batch (forward, backward and optimizer step) and the process's peak RSS after it."""

    def __init__(self, out: str) -> None:
        self.out, self.steps, self._start, self._cpu = out, [], 0.0, 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        self._start, self._cpu = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        seconds, cpu = time.perf_counter() - self._start, time.process_time() - self._cpu
        step = {"step": trainer.global_step, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1)}
        self.steps.append({**step, "rss_gib": round(_own_rss(), 2)})
        print(f"[step-timer] {step}, peak RSS {_own_rss():.2f} GiB", flush=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        Path(self.out).write_text(json.dumps({"steps": self.steps, "global_step": trainer.global_step}))


def _own_rss() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


# ---- child processes -----------------------------------------------------------------------------------------
@dataclass
class StageResult:
    name: str
    seconds: float
    cpu_seconds: float
    peak_rss_gib: float
    ok: bool
    details: dict[str, Any] = field(default_factory=dict)


def mem_available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024 / GIB
    return float("nan")


def run_child(name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> StageResult:
    """Run ``argv`` (niced), its output to ``log_dir/<name>.log``; wall time and the child's peak RSS."""
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(REPO)]), **(env or {})}
    print(f"-- {name}: {' '.join(argv)}  (MemAvailable {mem_available_gib():.1f} GiB)", flush=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["nice", "-n", "10", *argv], stdout=log, stderr=subprocess.STDOUT, env=full_env)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    result = StageResult(name, round(seconds, 1), round(cpu, 1), round(usage.ru_maxrss * 1024 / GIB, 2), code == 0)
    status = "ok" if code == 0 else f"FAILED (exit {code})"
    print(f"   {status}: {seconds:.1f} s wall, {cpu:.1f} s CPU, peak RSS {result.peak_rss_gib:.2f} GiB", flush=True)
    if code != 0:
        print("   " + "\n   ".join(log_path.read_text().splitlines()[-25:]))
    return result


def precision_for_cpu() -> str:
    import torch

    return "bf16-mixed" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "32-true"


# ---- config overrides ----------------------------------------------------------------------------------------
def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) and "class_path" in v for v in value):
        out = {}
        for item in value:
            out.update(_flatten(item.get("init_args", {}), f"{prefix}[{item['class_path'].rsplit('.', 1)[-1]}]"))
        return out
    return {prefix: value}


def cpu_config(
    config: dict[str, Any],
    run_dir: Path,
    shards: Path,
    precision: str,
    steps: int,
    variant: str | None,
    use_ema: bool,
    tiny: bool,
) -> dict[str, Any]:
    """The config with the CPU overrides (see the module docstring)."""
    config = copy.deepcopy(config)
    trainer = config["trainer"]
    trainer.update(
        accelerator="cpu",
        devices=1,
        strategy="auto",  # DDP on one process only adds a gradient-sized bucket copy
        precision=precision,
        max_steps=steps,
        accumulate_grad_batches=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_progress_bar=False,
        default_root_dir=str(run_dir),
        logger={"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(run_dir)}},
    )
    for callback in trainer["callbacks"]:
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"]["every_n_train_steps"] = steps
        if variant and callback["class_path"].endswith("RewardConditioning"):
            callback["init_args"]["variant"] = variant
    trainer["callbacks"].append(
        {"class_path": "real_size_cpu.StepTimer", "init_args": {"out": str(run_dir / "steps.json")}}
    )
    data = config["data"]["init_args"]
    data.update(train_shards=str(shards), val_shards=str(shards), batch_size=1, num_workers=0)
    model = config["model"]["init_args"]
    if "pretrained" in model:  # SmartEdit: the LLM in the training precision's dtype
        model["pretrained"]["llm_dtype"] = "bfloat16" if precision.startswith("bf16") else "float32"
        if tiny:  # the Q-Former and BIM widths follow the tiny UNet and vision tower: heads that divide them
            model["qformer"] = {"num_heads": 4, "intermediate_size": 64}
            model["bim"] = {"num_heads": 4, "mlp_dim": 64}
    elif not use_ema:
        model["use_ema"] = False
    return config


def overrides(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    old, new = _flatten(before), _flatten(after)
    return [f"{key}: {old.get(key, '-')} -> {new[key]}" for key in new if old.get(key, "-") != new[key]]


# ---- stages --------------------------------------------------------------------------------------------------
def build_folders(work: Path, layers: int, tiny: bool, log_dir: Path) -> list[StageResult]:
    results = []
    for arch, extra in (("sd15", []), ("sd15-ip2p", []), ("llava-smartedit", ["--layers", str(layers)])):
        out = work / "folders" / arch
        if out.is_dir() and any(out.iterdir()):
            print(f"-- folder {arch}: kept {out}")
            continue
        argv = [*MREDIT, "init-random", "--arch", arch, "--out", str(out), *extra, "--tiny", str(tiny).lower()]
        results.append(run_child(f"init_random_{arch}", argv, log_dir))
    return results


def make_shards(work: Path, resolution: int, log_dir: Path) -> Path:
    shards = work / f"shards_{resolution}"
    if not shards.is_dir():
        argv = [*MREDIT, "data", "synth", "--out", str(shards), "--num", "4", "--resolution", str(resolution)]
        if not run_child("shards", [*argv, "--with_rewards", "true"], log_dir).ok:
            raise SystemExit(f"could not write the shards to {shards} (see {log_dir / 'shards.log'})")
    return shards


def fit_stage(stage: str, args: argparse.Namespace, shards: Path, log_dir: Path) -> list[StageResult]:
    import yaml

    config_name, variant = FIT_STAGES[stage]
    folders = args.work / "folders"
    env = {
        "MREDIT_SD15_PATH": str(folders / "sd15"),
        "MREDIT_STAGE1_PATH": str(folders / "sd15-ip2p"),
        "MREDIT_SMARTEDIT_SD_PATH": str(folders / "sd15-ip2p"),
        "MREDIT_LLAVA_PATH": str(folders / "llava-smartedit" / "llava"),
        "MREDIT_CLIP_VISION_PATH": str(folders / "llava-smartedit" / "clip-vision"),
    }
    run_dir = args.work / "runs" / stage
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    original = yaml.safe_load((REPO / "configs" / f"{config_name}.yaml").read_text())
    smartedit = stage.startswith("smartedit")
    steps = args.smartedit_steps if smartedit else args.steps
    config = cpu_config(original, run_dir, shards, args.precision, steps, variant, args.ema == "on", args.tiny)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"== {stage}: configs/{config_name}.yaml with\n   " + "\n   ".join(overrides(original, config)))
    if mem_available_gib() < args.min_free_gib:
        print(f"   skipped: MemAvailable {mem_available_gib():.1f} GiB < --min_free_gib {args.min_free_gib}")
        return [StageResult(f"{stage}/fit", 0.0, 0.0, 0.0, False, {"skipped": "memory"})]
    fit = run_child(f"{stage}_fit", [*MREDIT, "fit", "--config", str(run_dir / "config.yaml")], log_dir, env)
    results = [fit]
    fit.name = f"{stage}/fit"
    steps_file = run_dir / "steps.json"
    if steps_file.is_file():
        fit.details = json.loads(steps_file.read_text())
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    fit.details["checkpoint_gib"] = round(ckpt.stat().st_size / GIB, 2) if ckpt.is_file() else None
    fit.ok = fit.ok and ckpt.is_file() and fit.details.get("global_step") == steps
    if smartedit or not fit.ok:
        if not args.keep:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        return results
    export_dir = run_dir / "export"
    export = run_child(
        f"{stage}_export", [*MREDIT, "export", "--ckpt", str(ckpt), "--out", str(export_dir)], log_dir, env
    )
    export.name = f"{stage}/export"
    results.append(export)
    if not args.keep:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    if export.ok:
        edit_json = run_dir / "stock_edit.json"
        argv = [
            sys.executable,
            __file__,
            "--child",
            "stock_edit",
            str(export_dir),
            str(args.edit_steps),
            str(edit_json),
        ]
        edit = run_child(f"{stage}_stock_edit", argv, log_dir)
        edit.name = f"{stage}/stock diffusers edit"
        if edit_json.is_file():
            edit.details = json.loads(edit_json.read_text())
        edit.ok = edit.ok and edit.details.get("finite", False)
        results.append(edit)
    if not args.keep:
        shutil.rmtree(export_dir, ignore_errors=True)
    return results


def released_reward_shapes(channels: int, time_dim: int, text_dim: int, score_dim: int = 768) -> dict[str, tuple]:
    """The 34 extra tensors of the released Reward-InsPix2Pix UNet (SD1.5: channels 320, time embedding 1280,
    CLIP text 768; the three 256-d score embeddings make 768)."""
    shapes: dict[str, tuple] = {}

    def linear(name: str, out: int, inp: int) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out, inp), (out,)

    linear("add_embedding.linear_1", time_dim, score_dim)
    linear("add_embedding.linear_2", time_dim, time_dim)
    linear("add_embedding2.linear_1", channels, score_dim)
    linear("add_embedding2.linear_2", channels, channels)
    linear("text_linear", channels, text_dim)
    linear("text_linear2", time_dim, text_dim)
    shapes["proj_deal.norm.weight"], shapes["proj_deal.norm.bias"] = (channels,), (channels,)
    for conv in ("proj_deal.proj_in", "proj_deal.proj_out"):
        shapes[f"{conv}.weight"], shapes[f"{conv}.bias"] = (channels, channels, 1, 1), (channels,)
    for name in ("self.query", "self.key", "self.value", "output.dense"):
        linear(f"ca.attention.{name}", channels, channels)
    linear("ca.hidden_intermediate.dense", channels, channels)
    linear("ca.output.dense", channels, channels)
    for norm in ("ca.attention.output.LayerNorm", "ca.output.LayerNorm"):
        shapes[f"{norm}.weight"], shapes[f"{norm}.bias"] = (channels,), (channels,)
    return shapes


def official_import_stage(args: argparse.Namespace, log_dir: Path) -> list[StageResult]:
    from safetensors import safe_open

    src, out = args.work / "released_layout", args.work / "official_import"
    for folder in (src, out):
        shutil.rmtree(folder, ignore_errors=True)
    argv = [sys.executable, __file__, "--child", "released_layout", str(args.work / "folders" / "sd15-ip2p"), str(src)]
    build = run_child("official_build_released_layout", argv, log_dir)
    build.name = "official_import/build released layout"
    results = [build]
    if build.ok:
        imported = run_child(
            "official_import", [*MREDIT, "import", "official", "--src", str(src), "--out", str(out)], log_dir
        )
        imported.name = "official_import/mredit import official"
        results.append(imported)
        weights = out / "conditioner" / "diffusion_pytorch_model.safetensors"
        if imported.ok and weights.is_file():
            with safe_open(str(weights), framework="pt") as f:
                count = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
            from mredit.export.official_import import SD15_CONDITIONER_PARAMETERS

            imported.details = {"conditioner_parameters": count, "documented": SD15_CONDITIONER_PARAMETERS}
            imported.ok = args.tiny or count == SD15_CONDITIONER_PARAMETERS
            print(f"   conditioner parameters: {count:,} (documented {SD15_CONDITIONER_PARAMETERS:,})")
    if not args.keep:
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    return results


def _numel(shape: list[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


# ---- the children's own work ---------------------------------------------------------------------------------
def child_stock_edit(export_dir: str, steps: str, out_json: str) -> None:
    """Stock diffusers loads the export and edits a 256 px image (the reward conditioner, if any, is ignored)."""
    import numpy as np
    import torch
    from diffusers import StableDiffusionInstructPix2PixPipeline
    from PIL import Image

    start = time.perf_counter()
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(export_dir)
    pipe.set_progress_bar_config(disable=True)
    load_seconds = time.perf_counter() - start
    ramp = np.linspace(0, 255, 256, dtype=np.uint8)
    image = Image.fromarray(np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[::-1][None, :]), -1))
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    edited = pipe(
        EDIT_INSTRUCTION, image=image, num_inference_steps=int(steps), generator=generator, output_type="np"
    ).images
    result = {
        "pipeline": type(pipe).__name__,
        "load_seconds": round(load_seconds, 1),
        "edit_seconds": round(time.perf_counter() - start, 1),
        "denoising_steps": int(steps),
        "shape": list(edited.shape),
        "finite": bool(np.isfinite(edited).all()) and edited.shape[1:3] == (256, 256),
    }
    Path(out_json).write_text(json.dumps(result))
    print(result)


def child_released_layout(ip2p_folder: str, out: str) -> None:
    """A stage-2 pipeline folder in the released layout: the InstructPix2Pix UNet's tensors plus the 34 reward
    tensors (random, at their released shapes) in one ``unet/`` file; the other parts linked."""
    import torch
    from safetensors.torch import load_file, save_file

    src, dst = Path(ip2p_folder), Path(out)
    (dst / "unet").mkdir(parents=True)
    config = json.loads((src / "unet" / "config.json").read_text())
    text_dim = json.loads((src / "text_encoder" / "config.json").read_text())["hidden_size"]
    channels = config["block_out_channels"][0]
    state = load_file(str(src / "unet" / "diffusion_pytorch_model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    for name, shape in released_reward_shapes(channels, 4 * channels, text_dim).items():
        state[name] = torch.randn(shape, generator=generator) * 0.02
    save_file(state, str(dst / "unet" / "diffusion_pytorch_model.safetensors"))
    (dst / "unet" / "config.json").write_text(json.dumps(config))
    for part in ("vae", "text_encoder", "tokenizer", "scheduler", "model_index.json"):
        (dst / part).symlink_to((src / part).resolve())


CHILDREN = {"stock_edit": child_stock_edit, "released_layout": child_released_layout}


# ---- main ----------------------------------------------------------------------------------------------------
def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        CHILDREN[sys.argv[2]](*sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mredit_real_size"), help="folders, shards, runs")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--layers", type=int, default=2, help="LLaMA layers kept in the llava-smartedit folder")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps of the InstructPix2Pix runs")
    parser.add_argument("--smartedit-steps", type=int, default=1)
    parser.add_argument("--edit-steps", type=int, default=2, help="denoising steps of the stock diffusers edit")
    parser.add_argument(
        "--precision", default=None, help="default: bf16-mixed if the CPU has native bf16, else 32-true"
    )
    parser.add_argument("--ema", choices=("on", "off"), default="on", help="the InstructPix2Pix configs' EMA")
    parser.add_argument("--min-free-gib", type=float, default=None, help="skip a fit when less memory is available")
    parser.add_argument("--tiny", action="store_true", help="tiny-width folders: a quick check of the stages")
    parser.add_argument("--keep", action="store_true", help="keep checkpoints, exports and the released layout")
    parser.add_argument("--report", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    args.precision = args.precision or precision_for_cpu()
    if args.min_free_gib is None:
        args.min_free_gib = 1.0 if args.tiny else 21.0
    log_dir = args.work / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    free = mem_available_gib()
    print(f"precision {args.precision}; {os.cpu_count()} CPUs, load {load:.1f}; MemAvailable {free:.1f} GiB")
    results: list[StageResult] = []
    results += build_folders(args.work, args.layers, args.tiny, log_dir)
    shards = make_shards(args.work, 256, log_dir)
    for stage in args.stages:
        if stage in FIT_STAGES:
            results += fit_stage(stage, args, shards, log_dir)
        elif stage == "official_import":
            results += official_import_stage(args, log_dir)
    print(f"\n{'stage':42s} {'wall s':>7s} {'CPU s':>7s} {'peak RSS GiB':>13s}  result")
    for result in results:
        steps = result.details.get("steps")
        note = ", ".join(f"step {s['step']}: {s['seconds']} s ({s['cpu_seconds']} s CPU)" for s in steps or [])
        if "conditioner_parameters" in result.details:
            note = f"conditioner {result.details['conditioner_parameters']:,} parameters"
        if "edit_seconds" in result.details:
            details = result.details
            note = f"{details['denoising_steps']} steps in {details['edit_seconds']} s, {details['shape']}"
        status = "ok" if result.ok else "FAILED"
        line = f"{result.name:42s} {result.seconds:7.1f} {result.cpu_seconds:7.1f} {result.peak_rss_gib:13.2f}"
        print(f"{line}  {status} {note}")
    if args.report:
        report = {"precision": args.precision, "layers": args.layers, "tiny": args.tiny, "ema": args.ema}
        args.report.write_text(json.dumps({**report, "results": [asdict(r) for r in results]}, indent=2))
    sys.exit(0 if all(r.ok for r in results) else 1)


if __name__ == "__main__":
    main()
