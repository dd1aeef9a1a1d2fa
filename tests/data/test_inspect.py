"""``mredit data inspect`` on fixture shards, with and without rewards, and with bad samples."""

from __future__ import annotations

import json
from pathlib import Path

import webdataset as wds
from PIL import Image

from mredit.cli import main
from mredit.schema import encode_sample


def test_inspect_writes_pngs_and_summary(tmp_path: Path, shard_dir: Path, make_sample, capsys) -> None:
    bad = tmp_path / "extra" / "bad.tar"
    bad.parent.mkdir()
    with wds.TarWriter(str(bad)) as writer:
        writer.write({**encode_sample(make_sample(50)), "reward.json": b"{oops"})
    out = tmp_path / "report"
    shards = json.dumps([str(shard_dir), str(bad)])
    assert main(["data", "inspect", "--shards", shards, "--out", str(out), "--num", "3"]) == 0
    printed = capsys.readouterr().out
    assert "24 samples in 9 shards" in printed and "rewards: 18 samples (75.0%)" in printed
    assert "s0050 [bad.tar]: sample 's0050': member 'reward.json' is not valid JSON" in printed
    for name in ("histograms.png", "contact_sheet.png"):
        with Image.open(out / name) as image:
            assert image.width > 100 and image.height > 100
    summary = json.loads((out / "summary.json").read_text())
    assert summary["score_histogram"]["preserving"] == {"5.0": 18}
    assert summary["skipped"] == {"bad_reward": 1} and summary["categories"] == {"color": 12, "object": 12}


def test_inspect_without_rewards(tmp_path: Path, make_shards) -> None:
    shards = make_shards(tmp_path / "plain", num_samples=4, shard_size=2, with_reward=False)
    out = tmp_path / "report"
    assert main(["data", "inspect", "--shards", str(shards), "--out", str(out), "--num", "2"]) == 0
    assert (out / "contact_sheet.png").is_file() and not (out / "histograms.png").exists()


def test_inspect_missing_path_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["data", "inspect", "--shards", str(tmp_path / "nope.tar"), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shard not found" in err and "nope.tar" in err


def test_inspect_without_out_writes_nothing_and_counts_unreadable_shards(
    tmp_path: Path, shard_dir: Path, monkeypatch
) -> None:
    from mredit.data.inspection import inspect_shards

    cut = tmp_path / "cut.tar"
    cut.write_bytes((shard_dir / "shard-000000.tar").read_bytes()[:300])  # inside the first member's header
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.iterdir())
    summary = inspect_shards([str(shard_dir), str(cut)])
    assert summary["num_samples"] == 24 and summary["shards"] == 9 and summary["files"] == {}
    assert summary["skipped"] == {"unreadable_shard": 1}
    assert sorted(tmp_path.iterdir()) == before
