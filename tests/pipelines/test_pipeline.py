import numpy as np
import pytest
import torch
from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline
from PIL import Image
from tiny_model import as_module, reward_pipeline, tiny_parts

from mredit.export.export import export_module
from mredit.pipelines.reward_edit import RewardEditPipeline, build_scheduler


def _image(seed: int, size: int = 16) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _run(pipe, seed=0, **kwargs):
    kwargs.setdefault("num_inference_steps", 3)
    return pipe(_image(1), "make it red", generator=torch.Generator().manual_seed(seed), output_type="pt", **kwargs)


def test_deterministic_for_a_seed(pipe) -> None:
    first, again, other = _run(pipe, 7), _run(pipe, 7), _run(pipe, 8)
    assert first.shape == (1, 3, 16, 16) and torch.equal(first, again)
    assert not torch.allclose(first, other)
    # the rewards reach the output
    assert not torch.allclose(first, _run(pipe, 7, scores=(0, 0, 0), feedback=["bad", "bad", "bad"]))


@pytest.mark.parametrize("scheduler", ["ddim", "dpmpp"])
def test_other_schedulers(scheduler) -> None:
    pipe = reward_pipeline(scheduler=scheduler)
    assert torch.equal(_run(pipe, 3), _run(pipe, 3))


def test_an_x0_model_with_a_scheduler_that_cannot_sample_it_is_one_clear_error() -> None:
    config = {"num_train_timesteps": 1000, "prediction_type": "sample"}
    with pytest.raises(ValueError, match="predicts x0 .* euler_a cannot sample: use ddim or dpmpp"):
        build_scheduler("euler_a", config)
    assert build_scheduler("ddim", config).config.prediction_type == "sample"


def test_the_auto_scheduler_follows_the_prediction_type() -> None:
    epsilon = {"num_train_timesteps": 1000, "prediction_type": "epsilon"}
    sample = {"num_train_timesteps": 1000, "prediction_type": "sample"}
    assert type(build_scheduler("auto", epsilon)).__name__ == "EulerAncestralDiscreteScheduler"
    assert type(build_scheduler("auto", sample)).__name__ == "DDIMScheduler"
    with pytest.raises(ValueError, match="unknown scheduler 'euler': choose one of auto, euler_a, ddim, dpmpp"):
        build_scheduler("euler", epsilon)


def test_batch_and_images_per_prompt_tiling() -> None:
    """A batch of two images x two samples each equals the four single-image runs from the same noise."""
    pipe = reward_pipeline(null_condition=True, scheduler="ddim")
    images, instructions = [_image(1), _image(2)], ["make it red", "remove the cat"]
    scores, feedback = [(5, 5, 5), (1, 2, 3)], [["None"] * 3, ["wrong colour", "blurry", "None"]]
    noise = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    opts = dict(num_inference_steps=3, reward_guidance_scale=1.5, output_type="pt")
    batched = pipe(images, instructions, scores, feedback, num_images_per_prompt=2, latents=noise, **opts)
    for index in range(4):
        i = index // 2
        single = pipe(images[i], instructions[i], scores[i], feedback[i], latents=noise[index : index + 1], **opts)
        assert torch.allclose(batched[index], single[0], atol=1e-5), index


def test_guidance_branches(monkeypatch) -> None:
    pipe = reward_pipeline(null_condition=True)
    seen = []
    forward = pipe.unet.forward
    monkeypatch.setattr(pipe.unet, "forward", lambda x, *a, **k: seen.append(x.shape[0]) or forward(x, *a, **k))
    _run(pipe, num_inference_steps=1, text_guidance_scale=1.0, image_guidance_scale=1.0)
    _run(pipe, num_inference_steps=1)
    _run(pipe, num_inference_steps=1, reward_guidance_scale=2.0)
    assert seen == [1, 3, 4]
    chunks = [torch.full((1,), v) for v in (4.0, 3.0, 1.0, 2.0)]  # (T,I,R), (∅,I,R), (∅,∅,R), (T,I,∅R)
    combined = RewardEditPipeline._combine(chunks, True, 7.5, 1.5, 2.0)
    assert combined.item() == pytest.approx(1 + 7.5 * (4 - 3) + 1.5 * (3 - 1) + (2 - 1) * (4 - 2))
    with pytest.raises(ValueError, match="null condition"):
        _run(reward_pipeline(), reward_guidance_scale=2.0)


def test_long_instruction_warns(pipe) -> None:
    with pytest.warns(UserWarning, match="tokens; the text encoder reads only the first 77"):
        pipe(_image(1), "paint " * 40, num_inference_steps=1, output_type="pt")


def test_export_loads_in_stock_diffusers_with_the_same_image(tmp_path) -> None:
    torch.manual_seed(0)
    module = as_module(tiny_parts("kl"))
    module.trained_resolution = 16  # recorded in model_index.json, which stock diffusers ignores
    out = export_module(module, tmp_path / "export")
    ours = RewardEditPipeline.from_pretrained(out, scheduler="euler_a")
    assert ours.trained_resolution == 16
    stock = StableDiffusionInstructPix2PixPipeline.from_pretrained(out, safety_checker=None)
    stock.scheduler = EulerAncestralDiscreteScheduler.from_config(stock.scheduler.config)
    stock.set_progress_bar_config(disable=True)
    image, steps = _image(3), 4
    expected = stock(
        "make it red",
        image=image,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(5),
        output_type="np",
    ).images
    got = ours(
        image, "make it red", num_inference_steps=steps, generator=torch.Generator().manual_seed(5), output_type="np"
    )
    assert np.allclose(got, expected, atol=1e-5)


def test_pixel_autoencoder_export_round_trip(tmp_path) -> None:
    pipe = reward_pipeline(vae="pixel")
    module = as_module(
        type(
            "P",
            (),
            {
                "unet": pipe.unet,
                "vae": pipe.vae,
                "text_encoder": pipe.text_encoder,
                "tokenizer": pipe.tokenizer,
                "scheduler": pipe.scheduler,
            },
        ),
        pipe.conditioner,
    )
    out = export_module(module, tmp_path / "export")
    loaded = RewardEditPipeline.from_pretrained(out)
    assert type(loaded.conditioner) is type(pipe.conditioner)
    assert torch.equal(_run(loaded, 2), _run(pipe, 2))


def test_paper_conditioner_with_token_feedback() -> None:
    from mredit.conditioning.registry import build_conditioner

    pipe = reward_pipeline()
    pipe.conditioner = build_conditioner(
        "paper", pipe.unet.config, pipe.text_encoder.config.hidden_size, null_condition=True
    ).eval()
    assert pipe.conditioner.feedback_format == "tokens"
    out = _run(pipe, 1, reward_guidance_scale=2.0)
    assert out.shape == (1, 3, 16, 16) and torch.isfinite(out).all()


@pytest.mark.parametrize("edit_residual", [True, False])
def test_edit_residual_adds_the_source_back(tmp_path, edit_residual) -> None:
    """A UNet that predicts a zero edit (x0 = 0) returns the source itself only in residual mode; the option
    survives export."""
    torch.manual_seed(0)
    parts = tiny_parts("pixel")
    with torch.no_grad():
        parts.unet.conv_out.weight.zero_()
        parts.unet.conv_out.bias.zero_()
    parts.scheduler.register_to_config(prediction_type="sample")
    module = as_module(parts)
    module.hparams = {"edit_residual": edit_residual}
    loaded = RewardEditPipeline.from_pretrained(export_module(module, tmp_path / "export"), scheduler="ddim")
    assert loaded.config.edit_residual is edit_residual
    source = _image(1)
    edited = loaded(source, "make it red", num_inference_steps=4, output_type="pt")[0]
    expected = torch.from_numpy(np.asarray(source)).permute(2, 0, 1).float() / 255
    error = (edited - expected).abs().max().item()
    assert error < 0.02 if edit_residual else error > 0.2
