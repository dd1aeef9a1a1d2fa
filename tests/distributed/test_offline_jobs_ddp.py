"""``mredit data encode`` and ``mredit edit --shards`` as Lightning predict over 2 gloo ranks: each rank writes the
outputs of its own input shards (``rank::2``), and together they hold every input sample exactly once, the same
as one process writes. Encode starts its ranks with Lightning's own launcher (``--devices 2``), edit under
``torchrun --standalone --nproc_per_node 2``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from distributed_helpers import QUIET_ENV, TORCHRUN
from safetensors.torch import load as load_tensors
from training_helpers import REPO

from mredit.cli import main
from mredit.data.reader import iter_raw_samples, read_samples, resolve_shards
from mredit.export.export import export_module
from mredit.models.ip2p import InstructPix2PixModule
from mredit.synth.generate import write_synth_shards

ENCODE = ["--resolution", "16", "--dtype", "float32", "--batch_size", "2"]
EDIT = ["--num_inference_steps", "2", "--resolution", "16", "--quiet", "true"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny model export and 6 samples in 3 shards of 2 (rank 0 reads shards 0 and 2, rank 1 shard 1)."""
    root = tmp_path_factory.mktemp("offline")
    torch.manual_seed(0)
    export_module(InstructPix2PixModule(conditioning_dropout=0.0), root / "model")
    write_synth_shards(root / "shards", "train", 6, resolution=16, seed=0, with_rewards=True, shard_size=2)
    shard_keys = [[sample.key for sample in read_samples(url)] for url in resolve_shards(str(root / "shards"))]
    return root, shard_keys


def _run(command: list[str], timeout: float = 240) -> str:
    env = {**os.environ, **QUIET_ENV}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def _latents(path) -> dict[str, dict[str, torch.Tensor]]:
    """key -> tensors of every sample of one latent shard."""
    samples = {}
    for raw in iter_raw_samples([str(path)]):
        samples[json.loads(raw["json"])["key"]] = load_tensors(raw["latents.safetensors"])
    return samples


@pytest.mark.slow
def test_encode_on_two_ranks_writes_each_ranks_own_shards(inputs):
    root, shard_keys = inputs
    common = ["data", "encode", "--model", str(root / "model"), "--shards", str(root / "shards"), *ENCODE]
    assert main([*common, "--out", str(root / "one")]) == 0  # one process: the reference
    printed = _run(
        [sys.executable, "-m", "mredit", *common, "--out", str(root / "two")]
        + ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    )
    assert printed.strip() == f"encoded 6 samples into {root / 'two'} (0 skipped)"  # printed once, by rank 0

    manifest = json.loads((root / "two" / "manifest.json").read_text())
    assert manifest["num_samples"] == 6
    names = [shard["path"] for shard in manifest["shards"]]
    assert names == ["latents-rank0000-000000.tar", "latents-rank0001-000000.tar"]  # the rank in the name
    per_rank = [_latents(root / "two" / shard["path"]) for shard in manifest["shards"]]
    assert [list(rank) for rank in per_rank] == [shard_keys[0] + shard_keys[2], shard_keys[1]]  # shards rank::2
    reference = _latents(root / "one" / "latents-000000.tar")
    merged = {key: tensors for rank in per_rank for key, tensors in rank.items()}
    assert sorted(merged) == sorted(reference) and len(reference) == 6
    for key, tensors in merged.items():
        assert tensors.keys() == reference[key].keys()
        assert all(torch.allclose(tensors[name], reference[key][name], atol=1e-6) for name in tensors)


@pytest.mark.slow
def test_edit_shards_on_two_torchrun_ranks_edits_each_sample_once(inputs):
    root, shard_keys = inputs
    common = ["edit", "--model", str(root / "model"), "--shards", str(root / "shards"), *EDIT]
    assert main([*common, "--out_dir", str(root / "edited_one")]) == 0  # one process: the reference
    printed = _run(
        [*TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "mredit", *common]
        + ["--out_dir", str(root / "edited_two"), "--accelerator", "cpu", "--devices", "2"]
    )
    # rank 0 edited the samples of shards 0 and 2, rank 1 those of shard 1; one line, from rank 0
    assert printed.strip() == f"wrote 6 images to {root / 'edited_two'} (2 processes: 4 + 2)"
    two = sorted(path.name for path in (root / "edited_two").iterdir())
    assert two == sorted(f"{key}.png" for keys in shard_keys for key in keys)
    for name in two:  # each edit has its own seeded generator: the rank that made it does not matter
        assert (root / "edited_two" / name).read_bytes() == (root / "edited_one" / name).read_bytes()


def test_devices_apply_to_shards_only(tmp_path, capsys):
    argv = ["edit", "--model", "m", "--image", "x.png", "--instruction", "x", "--out", str(tmp_path / "o.png")]
    assert main([*argv, "--devices", "2"]) == 1
    assert "--devices and --num_nodes apply to --shards only" in capsys.readouterr().err
