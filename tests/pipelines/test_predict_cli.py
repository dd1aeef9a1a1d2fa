"""``mredit fit`` then ``mredit predict --ckpt_path``: the EditedImageWriter writes one PNG per sample, at the
resolution the model was trained at (recorded in the checkpoint)."""

import torch
from PIL import Image

from mredit.cli import main
from mredit.synth.generate import write_synth_shards

COMMON = """
seed_everything: 0
trainer:
  accelerator: cpu
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {root}
  callbacks:
    - class_path: mredit.callbacks.reward_conditioning.RewardConditioning
      init_args: {{variant: official}}
    - class_path: {last_callback}
      init_args: {last_args}
model:
  class_path: mredit.models.ip2p.InstructPix2PixModule
  init_args:
    sampling: {{num_inference_steps: 2, scheduler: ddim}}
data:
  class_path: mredit.data.datamodule.EditDataModule
  init_args:
    {split}_shards: {shards}
    batch_size: 2
    num_workers: 0
    resolution: 16
"""


def test_fit_then_predict_writes_edited_images(tmp_path) -> None:
    write_synth_shards(tmp_path / "shards", "train", 3, resolution=16, seed=1, with_rewards=True)
    fit = tmp_path / "fit.yaml"
    fit.write_text(
        COMMON.format(
            root=tmp_path / "run",
            last_callback="lightning.pytorch.callbacks.ModelCheckpoint",
            last_args="{save_last: true}",
            split="train",
            shards=tmp_path / "shards",
        )
    )
    main(["fit", "--config", str(fit), "--trainer.max_steps", "1"])
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    predict = tmp_path / "predict.yaml"
    predict.write_text(
        COMMON.format(
            root=tmp_path / "run",
            last_callback="mredit.callbacks.edited_image_writer.EditedImageWriter",
            last_args=f"{{output_dir: {tmp_path / 'edited'}}}",
            split="predict",
            shards=tmp_path / "shards",
        )
    )
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["trained_resolution"] == 16
    # data.resolution 32 is not what the model was trained at: predict crops to the 16 px the checkpoint records
    main(["predict", "--config", str(predict), "--ckpt_path", str(ckpt), "--data.init_args.resolution", "32"])
    edited = sorted((tmp_path / "edited").glob("*.png"))
    assert len(edited) == 3 and {Image.open(path).size for path in edited} == {(16, 16)}
