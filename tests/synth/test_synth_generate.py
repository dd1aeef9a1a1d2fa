from __future__ import annotations

import hashlib
import json
import tarfile
from collections import Counter

import numpy as np
import pytest

from mredit.cli import main
from mredit.data.shards import read_manifest, shard_paths
from mredit.schema import REWARD_KEY, decode_sample
from mredit.synth.corruptions import KINDS, CorruptionConfig
from mredit.synth.edits import CATEGORIES
from mredit.synth.generate import generate_samples, write_synth_shards
from mredit.synth.oracle import OracleJudge


def members(out_dir) -> dict[str, bytes]:
    """Every tar member of a shard set, by name, whatever the sharding."""
    found = {}
    for path in shard_paths(out_dir):
        with tarfile.open(path) as tar:
            for info in tar.getmembers():
                found[info.name] = tar.extractfile(info).read()
    return found


def test_samples_are_deterministic_and_well_formed():
    a = list(generate_samples(20, "train", resolution=16, seed=3))
    b = list(generate_samples(20, "train", resolution=16, seed=3))
    assert [s.key for s in a] == [f"train_{i:06d}" for i in range(20)]
    for x, y in zip(a, b):
        assert x.instruction == y.instruction and x.meta == y.meta
        assert np.array_equal(np.asarray(x.target), np.asarray(y.target))
    sample = a[0]
    assert sample.source.size == (16, 16) and sample.reward is None
    assert set(sample.meta) >= {"dataset", "category", "scene", "edit", "corruptions", "split"}
    assert sample.meta["dataset"] == "synth" and sample.meta["category"] in CATEGORIES
    json.dumps(sample.meta)  # JSON-serialisable
    assert [s.key for s in generate_samples(2, "train", 16, seed=3, start=5)] == ["train_000005", "train_000006"]


def test_test_split_is_clean_and_balanced():
    samples = list(generate_samples(21, "test", resolution=16, corrupt_rate=1.0, seed=0))
    assert all(not s.meta["corruptions"] for s in samples)
    assert Counter(s.meta["category"] for s in samples) == {c: 3 for c in CATEGORIES}


def test_corrupt_rate_and_config():
    samples = list(generate_samples(200, "train", resolution=16, corrupt_rate=0.5, seed=1))
    rate = np.mean([bool(s.meta["corruptions"]) for s in samples])
    assert 0.4 <= rate <= 0.6
    flaws = [f for s in samples for f in s.meta["corruptions"]]
    assert all(f["perspective"] == KINDS[f["kind"]] and 0.2 <= f["severity"] <= 1.0 for f in flaws)
    assert {f["perspective"] for f in flaws} == {"following", "preserving", "quality"}
    only_noise = CorruptionConfig(rate=1.0, perspective_weights={"quality": 1.0}, kind_weights={"noise": 1.0})
    samples = list(generate_samples(10, "train", resolution=16, seed=1, corruption=only_noise))
    assert all([f["kind"] for f in s.meta["corruptions"]] == ["noise"] for s in samples)
    with pytest.raises(ValueError, match="unknown corruption kinds"):
        CorruptionConfig(kind_weights={"smudge": 1.0})


def test_rewards_come_from_the_oracle():
    oracle = OracleJudge()
    for sample in generate_samples(12, "train", resolution=32, corrupt_rate=0.5, seed=2, with_rewards=True):
        expected = oracle.score(sample.source, sample.instruction, sample.target, sample.meta)
        assert sample.reward.scores == expected.to_reward().scores
        assert sample.reward.judge["provider"] == "oracle"
        if not sample.meta["corruptions"]:
            assert sample.reward.scores == [5.0, 5.0, 5.0]


def test_shards_are_byte_identical_and_independent_of_shard_size(tmp_path):
    write_synth_shards(tmp_path / "a", "train", 30, resolution=16, seed=4, shard_size=7)
    write_synth_shards(tmp_path / "b", "train", 30, resolution=16, seed=4, shard_size=7)
    manifest = write_synth_shards(tmp_path / "c", "train", 30, resolution=16, seed=4, shard_size=100)
    digest = {
        d: [
            hashlib.sha256((tmp_path / d / s["path"]).read_bytes()).hexdigest()
            for s in read_manifest(tmp_path / d)["shards"]
        ]
        for d in ("a", "b")
    }
    assert digest["a"] == digest["b"] and len(digest["a"]) == 5
    assert members(tmp_path / "a") == members(tmp_path / "c")
    assert not any(name.endswith(REWARD_KEY) for name in members(tmp_path / "c"))
    assert manifest["num_samples"] == 30 and sum(manifest["categories"].values()) == 30
    provenance = manifest["provenance"]
    assert provenance["source"] == "synth" and provenance["seed"] == 4 and provenance["resolution"] == 16
    flawed = [s.meta["corruptions"] for s in generate_samples(30, "train", resolution=16, seed=4)]
    assert provenance["corrupted"] == sum(bool(f) for f in flawed) > 0
    assert sum(provenance["corruption_kinds"].values()) == sum(len(f) for f in flawed)


def test_cli_writes_decodable_shards(tmp_path, capsys):
    out = tmp_path / "test"
    argv = ["data", "synth", "--out", str(out), "--split", "test", "--num", "14", "--resolution", "16"]
    assert main([*argv, "--with_rewards", "true", "--shard_size", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["num_samples"] == 14
    manifest = read_manifest(out)
    assert manifest["reward_coverage"]["fraction"] == 1.0
    assert manifest["score_histogram"]["following"] == {"5": 14}  # the test split is exact
    with tarfile.open(shard_paths(out)[0]) as tar:
        raw = {}
        for info in tar.getmembers():
            key, ext = info.name.split(".", 1)
            raw.setdefault(key, {"__key__": key})[ext] = tar.extractfile(info).read()
    sample = decode_sample(raw["test_000000"])
    assert sample.reward.scores == [5.0, 5.0, 5.0] and sample.meta["category"] == "local"


@pytest.mark.parametrize(
    "args, message",
    [(["--num", "0"], "--num must be >= 1"), (["--num", "3", "--corrupt_rate", "2"], "corrupt rate must be in [0, 1]")],
)
def test_cli_errors_are_one_line(tmp_path, capsys, args, message):
    assert main(["data", "synth", "--out", str(tmp_path), *args]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.parametrize("level", [0, 1, 9])
def test_fast_png_encoding_is_lossless(level):
    """The shards' PNGs (written with a zlib level, without PIL) decode to exactly the pixels encoded."""
    from PIL import Image

    from mredit.schema import decode_image, encode_image

    rng = np.random.default_rng(level)
    images = [s.target for s in generate_samples(5, "train", resolution=32, corrupt_rate=1.0, seed=level)]
    images += [
        Image.fromarray(rng.integers(0, 256, (7, 13, 3), dtype=np.uint8)),  # not square, incompressible
        Image.fromarray(rng.integers(0, 256, (9, 5), dtype=np.uint8)),  # grayscale: stored as RGB
        Image.new("RGBA", (4, 3), (10, 20, 30, 128)),  # alpha dropped, as PIL's path does
    ]
    for image in images:
        data = encode_image(image, "png", compress_level=level)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        decoded = decode_image(data, "x.png")
        assert decoded.size == image.size
        assert np.array_equal(np.asarray(decoded), np.asarray(image.convert("RGB")))
        assert np.array_equal(np.asarray(decoded), np.asarray(decode_image(encode_image(image, "png"), "y.png")))
    with pytest.raises(ValueError, match="compress_level"):
        encode_image(images[0], "png", compress_level=10)


def test_weighted_pick_draws_as_generator_choice():
    """The corruption sampler's fast weighted draw gives rng.choice's result and leaves the stream where it does."""
    from mredit.synth.corruptions import _weighted_pick

    g = np.random.default_rng(0)
    for _ in range(300):
        k = int(g.integers(1, 6))
        options, weights = [f"o{i}" for i in range(k)], np.round(g.random(k) * 3, 1) + 0.1
        seed = int(g.integers(2**31))
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        assert [str(a.choice(options, p=weights / weights.sum())) for _ in range(3)] == [
            _weighted_pick(b, options, weights) for _ in range(3)
        ]
        assert a.random() == b.random()


def test_categories_restrict_both_splits_and_keep_the_default_stream():
    objects = ("local", "remove", "add")
    train = list(generate_samples(30, "train", resolution=16, seed=2, categories=["remove", "local", "add"]))
    assert {s.meta["category"] for s in train} == set(objects)
    test = list(generate_samples(6, "test", resolution=16, seed=2, categories=objects))
    assert [s.meta["category"] for s in test] == [*objects, *objects]  # canonical order, balanced
    every = list(generate_samples(10, "train", resolution=16, seed=2, categories=CATEGORIES))
    default = list(generate_samples(10, "train", resolution=16, seed=2))
    assert [s.instruction for s in every] == [s.instruction for s in default]  # all seven = the default stream
    with pytest.raises(ValueError, match="categories must be some of"):
        list(generate_samples(1, "train", categories=["recolour"]))


def test_cli_categories(tmp_path, capsys):
    out = tmp_path / "train"
    argv = ["data", "synth", "--out", str(out), "--num", "12", "--resolution", "16", "--categories", "[local, add]"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["categories"]) == {"local", "add"}
    assert read_manifest(out)["provenance"]["categories"] == ["local", "add"]
