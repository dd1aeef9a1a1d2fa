import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_trained import train_checkpoint

from mredit.cli import main
from mredit.models.loading import load_module_from_checkpoint
from mredit.pipelines.reward_edit import RewardEditPipeline


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    train_checkpoint(path)
    return path


def test_export_cli_writes_ema_weights(checkpoint, tmp_path) -> None:
    assert main(["export", "--ckpt", str(checkpoint), "--out", str(tmp_path / "ema")]) == 0
    assert main(["export", "--ckpt", str(checkpoint), "--out", str(tmp_path / "raw"), "--use_ema", "false"]) == 0
    index = json.loads((tmp_path / "ema" / "model_index.json").read_text())
    assert index["vae"] == ["mredit.models.pixel_autoencoder", "PixelShuffleAutoencoder"]
    assert index["conditioner"] == ["mredit.conditioning.official", "OfficialRewardConditioner"]
    module = load_module_from_checkpoint(checkpoint)
    raw = {k: v.clone() for k, v in module.unet.state_dict().items()}
    with module.ema_weights():
        ema = {k: v.clone() for k, v in module.unet.state_dict().items()}
    exported_ema = load_file(str(tmp_path / "ema" / "unet" / "diffusion_pytorch_model.safetensors"))
    exported_raw = load_file(str(tmp_path / "raw" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(exported_ema[k], ema[k]) for k in ema)
    assert all(torch.equal(exported_raw[k], raw[k]) for k in raw)
    assert any(not torch.equal(ema[k], raw[k]) for k in raw)


def test_exported_folder_and_checkpoint_edit_alike(checkpoint, tmp_path) -> None:
    out = tmp_path / "export"
    assert main(["export", "--ckpt", str(checkpoint), "--out", str(out)]) == 0
    module = load_module_from_checkpoint(checkpoint)
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    opts = dict(num_inference_steps=2, output_type="pt")
    with module.ema_weights():
        from_ckpt = RewardEditPipeline.from_module(module)(
            image, "x", generator=torch.Generator().manual_seed(1), **opts
        )
    exported = RewardEditPipeline.from_pretrained(out)(image, "x", generator=torch.Generator().manual_seed(1), **opts)
    assert torch.allclose(from_ckpt, exported, atol=1e-6)


def test_export_errors(checkpoint, tmp_path, capsys) -> None:
    assert main(["export", "--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "o")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    assert main(["export", "--ckpt", str(checkpoint), "--out", str(tmp_path / "busy")]) == 1
    assert "not empty" in capsys.readouterr().err


def test_a_checkpoint_written_before_the_renovation_loads(checkpoint, tmp_path) -> None:
    """Old LightningCLI checkpoints name the module's old class path and old hyperparameter names."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    hparams = state["hyper_parameters"]
    hparams["_class_path"] = "mredit.models.instruct_pix2pix.InstructPix2PixModule"
    hparams["_instantiator"] = "lightning.pytorch.cli.instantiate_module"
    hparams["lr_schedule"] = "cosine"  # renamed lr_scheduler
    hparams.pop("lr_scheduler", None)
    old = tmp_path / "old.ckpt"
    torch.save(state, old)
    module = load_module_from_checkpoint(old)
    fresh = load_module_from_checkpoint(checkpoint)
    assert type(module).__name__ == "InstructPix2PixModule"
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), fresh.state_dict().values()))


def test_an_export_folder_loads_in_a_fresh_process(checkpoint, tmp_path) -> None:
    """diffusers loads a component only from an imported library: the pipeline imports the mredit modules that
    model_index.json names (conditioner, pixel autoencoder) itself."""
    import subprocess
    import sys

    out = tmp_path / "export"
    assert main(["export", "--ckpt", str(checkpoint), "--out", str(out)]) == 0
    code = (
        "from mredit.pipelines.reward_edit import RewardEditPipeline as P; "
        f"p = P.from_pretrained({str(out)!r}); print(type(p.conditioner).__name__, type(p.vae).__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["OfficialRewardConditioner", "PixelShuffleAutoencoder"]
