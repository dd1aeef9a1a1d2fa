"""Fixtures: tiny shards in the project schema and tiny datasets in each source format."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from mredit.data.shards import ShardSetWriter
from mredit.schema import EditSample, Reward, encode_sample

SIZE = 24


def random_image(seed: int, size: tuple[int, int] = (SIZE, SIZE)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def image_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def build_sample(index: int, with_reward: bool = True, instruction: str | None = None) -> EditSample:
    reward = Reward.from_lists([index % 6, 5, 3.5], ["None", "None", "blurry"], {"model": "fixture"})
    return EditSample(
        key=f"s{index:04d}",
        source=random_image(2 * index),
        target=random_image(2 * index + 1),
        instruction=instruction or f"make it number {index}",
        reward=reward if with_reward else None,
        meta={"index": index, "category": "color" if index % 2 else "object"},
    )


def write_shards(out: Path, num_samples: int, shard_size: int, with_reward: bool = True) -> Path:
    with ShardSetWriter(out, shard_size=shard_size, provenance={"source": "fixture"}) as writer:
        for i in range(num_samples):
            writer.write(build_sample(i, with_reward=with_reward and i % 4 != 3))
    return out


@pytest.fixture
def make_sample():
    """``make_sample(index, with_reward=True, instruction=None) -> EditSample`` (24 px random images)."""
    return build_sample


@pytest.fixture
def make_shards():
    """``make_shards(out, num_samples, shard_size, with_reward=True) -> out`` (every 4th sample without reward)."""
    return write_shards


def write_bad_tar(path: Path) -> Path:
    """Eight samples s0000..s0007: 0 and 7 are good, 1-6 are each broken in a different way."""
    with wds.TarWriter(str(path)) as writer:
        writer.write(encode_sample(build_sample(0)))
        writer.write({**encode_sample(build_sample(1)), "src.png": b"\x89PNG broken"})
        missing = encode_sample(build_sample(2))
        del missing["txt"]
        writer.write(missing)
        writer.write({**encode_sample(build_sample(3)), "reward.json": b"{not json"})
        out_of_range = {p: {"score": 7, "feedback": "None"} for p in ("following", "preserving", "quality")}
        writer.write({**encode_sample(build_sample(4)), "reward.json": json.dumps(out_of_range).encode()})
        nan = {p: {"score": float("nan"), "feedback": "None"} for p in ("following", "preserving", "quality")}
        writer.write({**encode_sample(build_sample(5)), "reward.json": json.dumps(nan).encode()})
        writer.write({**encode_sample(build_sample(6)), "meta.json": b"[oops"})
        writer.write(encode_sample(build_sample(7)))
    return path


@pytest.fixture
def bad_tar():
    """``bad_tar(path) -> path``: a shard with 2 good and 6 broken samples (see ``write_bad_tar``)."""
    return write_bad_tar


@pytest.fixture
def shard_dir(tmp_path: Path) -> Path:
    """8 shards x 3 samples; every 4th sample has no reward."""
    return write_shards(tmp_path / "shards", num_samples=24, shard_size=3)


@pytest.fixture
def ip2p_folder(tmp_path: Path) -> Path:
    """The released InstructPix2Pix layout: seeds.json + <dir>/prompt.json, <seed>_0.jpg, <seed>_1.jpg."""
    root = tmp_path / "ip2p"
    seeds = []
    for d in range(3):
        name = f"000{d}.part"  # a dot, to exercise key sanitising
        (root / name).mkdir(parents=True)
        (root / name / "prompt.json").write_text(json.dumps({"edit": f"turn it {d}", "input": "a", "output": "b"}))
        dir_seeds = [100 + d, 200 + d]
        for s in dir_seeds:
            random_image(s).save(root / name / f"{s}_0.jpg")
            random_image(s + 1).save(root / name / f"{s}_1.jpg")
        seeds.append([name, dir_seeds])
    # a broken entry: the edited image is corrupt
    (root / "broken").mkdir()
    (root / "broken" / "prompt.json").write_text(json.dumps({"edit": "x"}))
    random_image(7).save(root / "broken" / "7_0.jpg")
    (root / "broken" / "7_1.jpg").write_bytes(b"not a jpeg")
    seeds.append(["broken", [7]])
    (root / "seeds.json").write_text(json.dumps(seeds))
    return root


def _image_struct(image: Image.Image, path: str) -> dict:
    return {"bytes": image_bytes(image, "PNG"), "path": path}


IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


@pytest.fixture
def ip2p_parquet(tmp_path: Path) -> Path:
    rows = [
        {
            "original_prompt": f"a photo {i}",
            "original_image": _image_struct(random_image(10 + i), f"o{i}.png"),
            "edit_prompt": f"add a hat {i}",
            "edited_prompt": f"a photo {i} with a hat",
            "edited_image": _image_struct(random_image(20 + i), f"e{i}.png"),
        }
        for i in range(5)
    ]
    rows[2]["edited_image"] = {"bytes": b"garbage", "path": "bad.png"}
    schema = pa.schema(
        [
            ("original_prompt", pa.string()),
            ("original_image", IMAGE_TYPE),
            ("edit_prompt", pa.string()),
            ("edited_prompt", pa.string()),
            ("edited_image", IMAGE_TYPE),
        ]
    )
    path = tmp_path / "ip2p-parquet" / "train-00000-of-00001.parquet"
    path.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=2)
    return path.parent


@pytest.fixture
def magicbrush_parquet(tmp_path: Path) -> Path:
    rows = [
        {
            "img_id": f"{327726 + i // 2}",
            "turn_index": i % 2 + 1,
            "source_img": _image_struct(random_image(30 + i), "s.png"),
            "mask_img": _image_struct(random_image(40 + i), "m.png"),
            "instruction": f"put a cat on it {i}",
            "target_img": _image_struct(random_image(50 + i), "t.png"),
        }
        for i in range(4)
    ]
    schema = pa.schema(
        [
            ("img_id", pa.string()),
            ("turn_index", pa.int32()),
            ("source_img", IMAGE_TYPE),
            ("mask_img", IMAGE_TYPE),
            ("instruction", pa.string()),
            ("target_img", IMAGE_TYPE),
        ]
    )
    path = tmp_path / "magicbrush" / "dev-00000.parquet"
    path.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=3)
    return path
