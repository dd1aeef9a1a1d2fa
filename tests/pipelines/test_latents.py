import pytest
import torch
from tiny_trained import trainer

from mredit.callbacks.reward_conditioning import RewardConditioning
from mredit.cli import main
from mredit.data.datamodule import collate_edit_samples, edit_sample_to_item
from mredit.data.latents import LatentDataModule
from mredit.data.reader import read_samples
from mredit.data.transforms import PairedTransform, pixels_to_float
from mredit.export.export import export_module
from mredit.models.ip2p import InstructPix2PixModule
from mredit.synth.generate import write_synth_shards


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    root = tmp_path_factory.mktemp("latents")
    torch.manual_seed(0)
    module = InstructPix2PixModule(conditioning_dropout=0.0)
    export_module(module, root / "model")
    write_synth_shards(root / "shards", "train", 4, resolution=16, seed=0, with_rewards=True)
    args = ["data", "encode", "--model", str(root / "model"), "--shards", str(root / "shards"), "--out"]
    assert main([*args, str(root / "latents"), "--resolution", "16", "--flip", "true", "--dtype", "float32"]) == 0
    return module, root


def _image_batch(root):
    samples = list(read_samples(str(root / "shards")))
    return collate_edit_samples([edit_sample_to_item(s, PairedTransform(16)) for s in samples])


def test_latent_batches_match_the_image_path(encoded) -> None:
    module, root = encoded
    data = LatentDataModule(train_shards=str(root / "latents"), batch_size=4, flip=False, shuffle_buffer=0)
    latent_batch = next(iter(data.train_dataloader()))
    image_batch = _image_batch(root)
    assert latent_batch["key"] == image_batch["key"]
    assert torch.equal(latent_batch["scores"], image_batch["scores"]) and latent_batch["reward_mask"].all()
    source_latents = module.vae.encode(pixels_to_float(image_batch["source"])).latent_dist.mode()
    assert torch.allclose(latent_batch["source_latents"], source_latents)
    assert torch.allclose(latent_batch["instruction_embeds"], module.encode_instructions(image_batch["instruction"]))
    module.eval()
    losses = []
    for batch in (latent_batch, image_batch):
        torch.manual_seed(1)
        losses.append(module.diffusion_loss(batch, generator=torch.Generator().manual_seed(2)))
    assert torch.allclose(losses[0], losses[1], atol=1e-5)


def test_flip_variants_are_stored(encoded) -> None:
    _, root = encoded
    plain = next(iter(LatentDataModule(train_shards=str(root / "latents"), flip=False).train_dataloader()))
    flipped_any = False
    for seed in range(4):
        data = LatentDataModule(
            train_shards=str(root / "latents"), batch_size=4, flip=True, shuffle_buffer=0, seed=seed
        )
        batch = next(iter(data.train_dataloader()))
        for index, meta in enumerate(batch["meta"]):
            if meta["flipped"]:
                flipped_any = True
                expected = plain["source_latents"][plain["key"].index(batch["key"][index])]
                assert not torch.allclose(batch["source_latents"][index], expected)
    assert flipped_any


def test_training_from_latents_skips_the_encoders(encoded, monkeypatch) -> None:
    module, root = encoded
    module.train()

    def forbidden(*args, **kwargs):
        raise AssertionError("a frozen encoder ran in the training step")

    monkeypatch.setattr(module.vae, "encode", forbidden)
    monkeypatch.setattr(module.text_encoder, "forward", forbidden)
    data = LatentDataModule(train_shards=str(root / "latents"), batch_size=2)
    fit = trainer(max_steps=2, callbacks=[RewardConditioning(variant="official")])
    fit.fit(module, datamodule=data)
    assert fit.global_step == 2 and module.reward_conditioner is not None


def test_encode_skips_and_counts_a_corrupt_sample(encoded, tmp_path) -> None:
    import webdataset as wds
    from PIL import Image

    from mredit.models.loading import load_encoders
    from mredit.schema import SOURCE_PREFIX, EditSample, encode_sample
    from mredit.training.latent_encoding import encode_shards

    _, root = encoded
    shard = tmp_path / "mixed-000000.tar"
    good = EditSample("good", Image.new("RGB", (16, 16), "red"), Image.new("RGB", (16, 16), "blue"), "make it blue")
    broken = encode_sample(EditSample("broken", good.source, good.target, "x"))
    broken[next(k for k in broken if k.startswith(SOURCE_PREFIX + "."))] = b"not a png"
    with wds.TarWriter(str(shard)) as writer:
        writer.write(encode_sample(good))
        writer.write(broken)
    encoders = load_encoders(root / "model")
    manifest = encode_shards(encoders, str(shard), tmp_path / "out", resolution=16, dtype="float32")
    assert manifest["num_samples"] == 1
    assert sum(manifest["provenance"]["skipped"].values()) == 1
    batch = next(iter(LatentDataModule(train_shards=str(tmp_path / "out"), flip=False).train_dataloader()))
    assert batch["key"] == ["good"] and not batch["reward_mask"].any()
