"""Training throughput of ``InstructPix2PixModule``: Lightning Trainer vs a plain PyTorch loop doing the same step.

CPU (default): the tiny model; the goal is Lightning / plain >= 0.97 (the framework adds no measurable cost).

    python benchmarks/train_step.py --steps 30 --batch-size 16

GPU (``--gpu``): the published SD1.5 UNet config (8 input channels, random weights) with the SD VAE and CLIP-L
configs (random weights), 256 px, bf16 autocast; prints images/s, MFU and peak memory. ``--precomputed``
feeds latent batches (no VAE/CLIP in the step). FLOPs per sample are fixed counts, and docs/benchmarks.md says
how they were counted: UNet fwd+bwd 537.39 GF at 32x32 latents, VAE encoder 272.72 GF per 256 px image (two per
sample), CLIP-L text 13.30 GF; MFU = FLOPs/s / peak (dense bf16, 989.4 TFLOP/s H100).

    python benchmarks/train_step.py --gpu --batch-size 32 --steps 50 [--compile] [--channels-last]
"""

from __future__ import annotations

import argparse
import time

import lightning.pytorch as pl
import torch

from mredit.models.ip2p import InstructPix2PixModule

UNET_FWD_BWD_GF, VAE_ENCODE_GF, CLIP_TEXT_GF = 537.39, 272.72, 13.30
SD15_UNET = {
    "sample_size": 32,
    "in_channels": 8,
    "out_channels": 4,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
CLIP_L_TEXT = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
SD_VAE = {
    "_class_name": "AutoencoderKL",
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "scaling_factor": 0.18215,
}
SD_SCHEDULER = {
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "prediction_type": "epsilon",
}


def build(args: argparse.Namespace) -> tuple[InstructPix2PixModule, dict]:
    torch.manual_seed(0)
    if args.gpu:
        module = InstructPix2PixModule(
            unet_config=SD15_UNET,
            text_encoder_config=CLIP_L_TEXT,
            vae_config=SD_VAE,
            scheduler_config=SD_SCHEDULER,
            gradient_checkpointing=args.gradient_checkpointing,
            channels_last=args.channels_last,
            compile_unet=args.compile,
        )
        resolution = 256
    else:
        module = InstructPix2PixModule(learning_rate=1e-3)
        resolution = args.resolution
    if args.gpu:  # the latents of --precomputed are encoded on the GPU too
        module.to("cuda")
    b = args.batch_size
    source = torch.rand(b, 3, resolution, resolution, device=module.device) * 2 - 1
    batch = {
        "key": [str(i) for i in range(b)],
        "source": source,
        "target": source.flip(-1),
        "instruction": ["turn the circle red"] * b,
        "scores": torch.full((b, 3), 5.0, device=module.device),
        "feedback": [["None"] * 3] * b,
        "reward_mask": torch.ones(b, dtype=torch.bool, device=module.device),
    }
    if args.precomputed:
        with torch.no_grad():
            posterior = module.vae.encode(batch["target"]).latent_dist
            batch = {
                "key": batch["key"],
                "source_latents": module.vae.encode(batch["source"]).latent_dist.mode(),
                "target_latent_mean": posterior.mean,
                "target_latent_logvar": posterior.logvar,
                "instruction_embeds": module.encode_instructions(batch["instruction"]),
            }
    return module, batch


class _Repeat(torch.utils.data.IterableDataset):
    def __init__(self, batch: dict) -> None:
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch


class _Timer(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start = warmup, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            _sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        _sync(pl_module.device)
        self.elapsed = time.perf_counter() - self.start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_lightning(args: argparse.Namespace) -> float:
    module, batch = build(args)
    timer = _Timer(args.warmup)
    trainer = pl.Trainer(
        accelerator="gpu" if args.gpu else "cpu",
        devices=1,
        precision="bf16-mixed" if args.gpu else "32-true",
        max_steps=args.warmup + args.steps,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    loader = torch.utils.data.DataLoader(_Repeat(batch), batch_size=None)
    trainer.fit(module, loader)
    return args.steps * args.batch_size / timer.elapsed


def run_plain(args: argparse.Namespace) -> float:
    """The same step by hand: loss, backward, clip, AdamW, EMA update, LR schedule."""
    module, batch = build(args)
    device = torch.device("cuda" if args.gpu else "cpu")
    module.to(device).train()
    if args.gpu:
        module.vae.to(torch.bfloat16)
        module.text_encoder.to(torch.bfloat16)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    optimizers = module.configure_optimizers()
    optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    params = [p for _, p in module.trainable_named_parameters()]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.gpu)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            _sync(device)
            start = time.perf_counter()
        with autocast:
            loss = module.diffusion_loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        module.ema.update(module.trainable_named_parameters())
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="SD1.5-sized UNet at 256 px in bf16 on CUDA")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=32, help="CPU mode image size")
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two loops this many times")
    parser.add_argument("--precomputed", action="store_true", help="latent batches: no VAE / CLIP in the step")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.4, help="dense bf16 peak of the GPU")
    args = parser.parse_args()
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    torch.set_float32_matmul_precision("high")
    lightning, plain = [], []
    for _ in range(args.repeats):  # alternate so that load changes on a shared machine hit both
        plain.append(run_plain(args))
        if args.gpu:
            torch.cuda.reset_peak_memory_stats()
        lightning.append(run_lightning(args))
    best_l, best_p = max(lightning), max(plain)
    mode = "gpu SD1.5 UNet 256px bf16" if args.gpu else f"cpu tiny {args.resolution}px fp32"
    print(f"mode: {mode}, batch {args.batch_size}, {args.steps} timed steps, precomputed={args.precomputed}")
    print(f"plain PyTorch loop : {best_p:8.2f} images/s  (runs: {', '.join(f'{v:.2f}' for v in plain)})")
    print(f"Lightning Trainer  : {best_l:8.2f} images/s  (runs: {', '.join(f'{v:.2f}' for v in lightning)})")
    print(f"ratio Lightning / plain: {best_l / best_p:.3f}  (goal >= 0.97)")
    if args.gpu:
        gf = UNET_FWD_BWD_GF + (0 if args.precomputed else 2 * VAE_ENCODE_GF + CLIP_TEXT_GF)
        mfu = best_l * gf * 1e9 / (args.peak_tflops * 1e12)
        print(f"FLOPs/sample {gf:.1f} GF, MFU {100 * mfu:.1f} % of {args.peak_tflops} TFLOP/s")
        print(f"peak memory (Lightning run): {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
