"""Import the released Reward-InsPix2Pix stage-2 UNet into a stock diffusers UNet plus the ``official`` conditioner.

The released ``unet/`` holds every key of a standard ``UNet2DConditionModel`` (``in_channels=8``) plus 34 extra
top-level tensors (``add_embedding.*``, ``add_embedding2.*``, ``text_linear.*``, ``text_linear2.*``,
``proj_deal.*``, ``ca.*``). ``OfficialRewardConditioner`` reuses those names, so the import is an explicit split
of one state dict: both halves load strictly and any missing or unknown key fails with its name.
Sizes come from the UNet config and the tensors, so tiny folders in the same layout import too (tests).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from torch import nn
from transformers import CLIPTextModel, CLIPTokenizer

from mredit.conditioning.base import FeedbackEmbedding
from mredit.conditioning.official import OfficialRewardConditioner, _largest_divisor_at_most
from mredit.conditioning.seams import reward_conditioning
from mredit.export.export import check_empty
from mredit.pipelines.reward_edit import RewardEditPipeline

OFFICIAL_PREFIXES = ("add_embedding.", "add_embedding2.", "text_linear.", "text_linear2.", "proj_deal.", "ca.")
OFFICIAL_EXTRA_KEYS = tuple(
    f"{module}.{param}"
    for module in (
        "add_embedding.linear_1",
        "add_embedding.linear_2",
        "add_embedding2.linear_1",
        "add_embedding2.linear_2",
        "text_linear",
        "text_linear2",
        "proj_deal.norm",
        "proj_deal.proj_in",
        "proj_deal.proj_out",
        "ca.attention.self.query",
        "ca.attention.self.key",
        "ca.attention.self.value",
        "ca.attention.output.dense",
        "ca.attention.output.LayerNorm",
        "ca.hidden_intermediate.dense",
        "ca.output.dense",
        "ca.output.LayerNorm",
    )
    for param in ("weight", "bias")
)
SD15_CONDITIONER_PARAMETERS = 5_026_880
_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
# config fields the official class ignores; a non-null value would make the stock UNet build extra modules
_MUST_BE_NULL = ("class_embed_type", "addition_embed_type", "encoder_hid_dim_type")


def read_unet_state_dict(unet_dir: Path) -> dict[str, torch.Tensor]:
    """Read the raw UNet weights (safetensors preferred, else the pickled ``.bin``) once, on the CPU."""
    for name in _WEIGHT_FILES:
        path = unet_dir / name
        if path.is_file():
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return load_file(str(path))
            return torch.load(path, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no UNet weights in {unet_dir} (expected one of {', '.join(_WEIGHT_FILES)})")


def split_official_state_dict(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split into (stock UNet keys, the conditioner's extra keys) by the official top-level prefixes."""
    extra = {k: v for k, v in state.items() if k.startswith(OFFICIAL_PREFIXES)}
    rest = {k: v for k, v in state.items() if k not in extra}
    return rest, extra


def _names(keys: set[str], limit: int = 8) -> str:
    ordered = sorted(keys)
    more = f" (+{len(ordered) - limit} more)" if len(ordered) > limit else ""
    return ", ".join(ordered[:limit]) + more


def conditioner_from_official_state(extra: dict[str, torch.Tensor], unet_config) -> OfficialRewardConditioner:
    """Build an ``OfficialRewardConditioner`` sized from the tensors and load them strictly."""
    missing, unknown = set(OFFICIAL_EXTRA_KEYS) - set(extra), set(extra) - set(OFFICIAL_EXTRA_KEYS)
    if missing or unknown:
        raise ValueError(f"official reward keys do not match: missing [{_names(missing)}], unknown [{_names(unknown)}]")
    latent_channels = extra["add_embedding2.linear_2.weight"].shape[0]
    time_embed_dim = extra["add_embedding.linear_2.weight"].shape[0]
    expected_channels = int(unet_config["block_out_channels"][0])
    expected_time = unet_config.get("time_embedding_dim") or expected_channels * 4
    if (latent_channels, time_embed_dim) != (expected_channels, expected_time):
        raise ValueError(
            f"official reward weights are sized for width {latent_channels} / time embedding {time_embed_dim}, "
            f"the UNet config has {expected_channels} / {expected_time}"
        )
    conditioner = OfficialRewardConditioner(
        time_embed_dim=time_embed_dim,
        latent_channels=latent_channels,
        text_dim=extra["text_linear.weight"].shape[1],
        score_embed_dim=extra["add_embedding.linear_1.weight"].shape[1] // 3,
        flip_sin_to_cos=bool(unet_config.get("flip_sin_to_cos", True)),
        freq_shift=float(unet_config.get("freq_shift", 0)),
        num_heads=_largest_divisor_at_most(latent_channels, 8),
        norm_groups=_largest_divisor_at_most(latent_channels, 32),
    )
    conditioner.load_state_dict(extra, strict=True)
    return conditioner.eval()


def load_official_unet(unet_dir: str | Path) -> tuple[UNet2DConditionModel, OfficialRewardConditioner]:
    """Released ``unet/`` folder -> (stock ``UNet2DConditionModel``, ``OfficialRewardConditioner``), both eval."""
    unet_dir = Path(unet_dir)
    config_path = unet_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no UNet config at {config_path}")
    config = json.loads(config_path.read_text())
    set_fields = [name for name in _MUST_BE_NULL if config.get(name) is not None]
    if set_fields:
        raise ValueError(f"{config_path}: expected null {', '.join(set_fields)} in the official UNet config")
    unet_config = {k: v for k, v in config.items() if not k.startswith("_")}
    unet = UNet2DConditionModel.from_config(unet_config)
    rest, extra = split_official_state_dict(read_unet_state_dict(unet_dir))
    expected = set(unet.state_dict())
    missing, unknown = expected - set(rest), set(rest) - expected
    if missing or unknown:
        raise ValueError(f"UNet keys do not match its config: missing [{_names(missing)}], unknown [{_names(unknown)}]")
    unet.load_state_dict(rest, strict=True)
    conditioner = conditioner_from_official_state(extra, dict(unet.config))
    return unet.eval(), conditioner


def import_official(src: str | Path, out: str | Path) -> Path:
    """Convert a released stage-2 pipeline folder into an mredit export folder (stock UNet + ``conditioner/``).

    The VAE, CLIP text encoder and tokenizer are loaded and saved unchanged; the scheduler's config becomes the
    export's training-scheduler config (``RewardEditPipeline`` builds its inference sampler from it).
    """
    src = Path(src)
    if not (src / "unet").is_dir():
        raise FileNotFoundError(f"{src} has no unet/ folder (expected the stage2_reward_instruct_pix2pix folder)")
    out = check_empty(out)
    unet, conditioner = load_official_unet(src / "unet")
    pipe = RewardEditPipeline(
        vae=AutoencoderKL.from_pretrained(src / "vae"),
        text_encoder=CLIPTextModel.from_pretrained(src / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(src / "tokenizer"),
        unet=unet,
        scheduler=DDPMScheduler.from_pretrained(src / "scheduler"),
        conditioner=conditioner,
    )
    return pipe.save_export(out)


class OfficialDenoiser(nn.Module):
    """The converted official denoiser on explicit tensors.

    ``x``: ``[B, 8, h, w]`` = noisy latents concatenated with the (unscaled) source latents; ``t``: timesteps;
    ``encoder_hidden_states``: the instruction's CLIP last hidden states; ``scores``: ``[B, 3]``;
    ``feedback_pooled``: ``[B, D]`` pooled CLIP output of the "; "-joined failure texts. Returns ε̂.
    """

    def __init__(self, unet: UNet2DConditionModel, conditioner: OfficialRewardConditioner) -> None:
        super().__init__()
        self.unet = unet
        self.conditioner = conditioner

    @classmethod
    def from_official(cls, unet_dir: str | Path) -> OfficialDenoiser:
        return cls(*load_official_unet(unet_dir))

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | int,
        encoder_hidden_states: torch.Tensor,
        scores: torch.Tensor,
        feedback_pooled: torch.Tensor,
    ) -> torch.Tensor:
        condition = self.conditioner(scores, FeedbackEmbedding(pooled=feedback_pooled))
        with reward_conditioning(self.unet, condition):
            return self.unet(x, t, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]
