import numpy as np
from PIL import Image
from tiny_trained import edit_items, loader, train_checkpoint, trainer

from mredit.callbacks.edited_image_writer import EditedImageWriter, image_filename


def test_predict_writes_one_png_per_key(tmp_path) -> None:
    module = train_checkpoint(tmp_path / "tiny.ckpt")
    module.hparams.sampling = {"num_inference_steps": 2}
    out = tmp_path / "pred"
    predict = trainer(callbacks=[EditedImageWriter(str(out))])
    predict.predict(module, loader(edit_items(3)), return_predictions=False)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["synth__000.png", "synth__001.png", "synth__002.png"]
    first = np.asarray(Image.open(out / names[0]))
    assert first.shape == (16, 16, 3)
    # a second run gives the same images: each batch has its own seeded generator
    again = tmp_path / "again"
    trainer(callbacks=[EditedImageWriter(str(again))]).predict(module, loader(edit_items(3)), return_predictions=False)
    assert np.array_equal(first, np.asarray(Image.open(again / names[0])))


def test_image_filename() -> None:
    assert image_filename("a/b/c") == "a__b__c.png"
