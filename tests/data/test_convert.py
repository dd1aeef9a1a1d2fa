"""``mredit data convert`` from each source format, with reward joins and their reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mredit.cli import main
from mredit.data.reader import read_samples
from mredit.data.shards import read_manifest
from mredit.schema import Reward


def _samples(shard_dir: Path):
    return list(read_samples(shard_dir))


def _rewardedit_entry(scores):
    return Reward.from_lists(scores, ["None", "the sky changed", "None"]).to_rewardedit()


def test_ip2p_folder_first_seed_with_rewardedit(tmp_path: Path, ip2p_folder: Path, capsys) -> None:
    rewards = tmp_path / "RewardEdit20K.json"
    rewards.write_text(json.dumps({"0000.part": _rewardedit_entry([4, 2, 5]), "9999": _rewardedit_entry([1, 1, 1])}))
    out = tmp_path / "out"
    argv = ["data", "convert", "--src_format", "ip2p-folder", "--src", str(ip2p_folder), "--out", str(out)]
    assert main([*argv, "--rewards", str(rewards), "--shard_size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 3 samples in 2 shards" in printed
    assert "skipped 1 unusable source records: broken" in printed
    assert "1 reward keys match no sample: 9999" in printed
    assert "2 samples have no reward: 0001_part, 0002_part" in printed

    samples = {s.key: s for s in _samples(out)}
    assert set(samples) == {"0000_part", "0001_part", "0002_part"}
    first = samples["0000_part"]
    assert first.instruction == "turn it 0" and first.meta["source_id"] == "0000.part" and first.meta["seed"] == 100
    assert first.reward.scores == [4.0, 2.0, 5.0] and first.reward.preserving.feedback == "the sky changed"
    assert samples["0001_part"].reward is None

    manifest = read_manifest(out)
    assert manifest["reward_coverage"]["with_reward"] == 1
    report = manifest["provenance"]["rewards"]
    assert report["unmatched_reward_keys"] == ["9999"] and report["samples_without_reward"] == [
        "0001_part",
        "0002_part",
    ]
    assert manifest["provenance"]["source"]["format"] == "ip2p-folder"
    assert manifest["provenance"]["command"].startswith("mredit data convert")
    assert manifest["provenance"]["skipped_source_records"]["records"][0]["key"] == "broken"


def test_ip2p_folder_all_seeds(tmp_path: Path, ip2p_folder: Path) -> None:
    out = tmp_path / "out"
    argv = ["data", "convert", "--src_format", "ip2p-folder", "--src", str(ip2p_folder), "--out", str(out)]
    assert main([*argv, "--seeds", "all", "--image_format", "jpg"]) == 0
    keys = sorted(s.key for s in _samples(out))
    assert keys == [
        "0000_part_100",
        "0000_part_200",
        "0001_part_101",
        "0001_part_201",
        "0002_part_102",
        "0002_part_202",
    ]
    assert all(name.endswith(".tar") for name in (s["path"] for s in read_manifest(out)["shards"]))


def test_ip2p_parquet(tmp_path: Path, ip2p_parquet: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["data", "convert", "--src_format", "ip2p-parquet", "--src", str(ip2p_parquet), "--out", str(out)]) == 0
    samples = _samples(out)
    assert [s.key for s in samples] == [f"train-00000-of-00001_{i:07d}" for i in (0, 1, 3, 4)]  # row 2 is corrupt
    assert samples[0].instruction == "add a hat 0" and samples[0].meta["edited_prompt"] == "a photo 0 with a hat"
    assert "skipped 1 unusable source records" in capsys.readouterr().out


def test_magicbrush_with_judge_jsonl(tmp_path: Path, magicbrush_parquet: Path, capsys) -> None:
    def record(key, status, score=4.0):
        judgement = {p: {"score": score, "verdict": True, "feedback": "None"} for p in ("following", "preserving")}
        judgement["quality"] = {"score": 3.0, "verdict": False, "feedback": "artifacts"}
        fingerprint = {"provider": "oracle", "model": "m", "prompt_version": "v1"}
        return json.dumps({"key": key, "status": status, "judgement": judgement, "fingerprint": fingerprint})

    lines = [
        record("327726_1", "ok", 2.0),
        record("327726_1", "ok", 4.5),  # the last ok record wins
        record("327726_2", "refused"),
        record("327727_1", "ok", 9.0),  # out of range: invalid, reported
        "{broken json",
        record("nope_1", "ok"),
    ]
    annotations = tmp_path / "annotations.jsonl"
    annotations.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    argv = ["data", "convert", "--src_format", "magicbrush", "--src", str(magicbrush_parquet), "--out", str(out)]
    assert main([*argv, "--rewards", str(annotations)]) == 0
    printed = capsys.readouterr().out
    assert "2 malformed reward records" in printed and "1 reward keys match no sample: nope_1" in printed
    samples = {s.key: s for s in _samples(out)}
    assert set(samples) == {"327726_1", "327726_2", "327727_1", "327727_2"}
    joined = samples["327726_1"]
    assert joined.reward.scores == [4.5, 4.5, 3.0] and joined.reward.judge["provider"] == "oracle"
    assert joined.meta["has_mask"] is True and joined.meta["turn_index"] == 1
    report = read_manifest(out)["provenance"]["rewards"]
    assert report["statuses"] == {"ok": 4, "refused": 1}
    assert report["samples_without_reward"] == ["327726_2", "327727_1", "327727_2"]


def test_reshard_and_join_annotations(tmp_path: Path, shard_dir: Path) -> None:
    fingerprint = {"provider": "oracle"}
    judgement = {
        p: {"score": 1.0, "verdict": False, "feedback": "wrong"} for p in ("following", "preserving", "quality")
    }
    annotations = tmp_path / "a.jsonl"
    annotations.write_text(
        json.dumps({"key": "s0003", "status": "ok", "judgement": judgement, "fingerprint": fingerprint})
    )
    out = tmp_path / "out"
    argv = ["data", "convert", "--src_format", "shards", "--src", str(shard_dir), "--out", str(out)]
    assert main([*argv, "--shard_size", "10", "--rewards", str(annotations)]) == 0
    manifest = read_manifest(out)
    assert manifest["num_samples"] == 24 and len(manifest["shards"]) == 3
    samples = {s.key: s for s in _samples(out)}
    assert samples["s0003"].reward.scores == [1.0, 1.0, 1.0]  # was without reward in the fixture
    assert samples["s0000"].reward is not None  # existing rewards are kept
    assert manifest["reward_coverage"]["with_reward"] == 19  # 18 had rewards, s0003 joined
    assert samples["s0005"].meta["index"] == 5


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("ip2p-folder", "ip2p folder not found"),
        ("magicbrush", "parquet source not found"),
        ("shards", "shard not found"),
    ],
)
def test_missing_source_is_a_one_line_error(tmp_path: Path, capsys, fmt: str, message: str) -> None:
    missing = str(tmp_path / "nowhere.tar")
    assert main(["data", "convert", "--src_format", fmt, "--src", missing, "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mredit data convert: error:") and message in err and "\n" not in err


def test_missing_rewards_file_is_a_one_line_error(tmp_path: Path, shard_dir: Path, capsys) -> None:
    argv = ["data", "convert", "--src_format", "shards", "--src", str(shard_dir), "--out", str(tmp_path / "o")]
    assert main([*argv, "--rewards", str(tmp_path / "none.json")]) == 1
    assert "rewards file not found" in capsys.readouterr().err


def test_failed_conversion_leaves_no_manifest(tmp_path: Path, ip2p_folder: Path, capsys) -> None:
    out = tmp_path / "o"
    sources = json.dumps([str(ip2p_folder), str(tmp_path / "gone")])
    argv = ["data", "convert", "--src_format", "ip2p-folder", "--src", sources]
    assert main([*argv, "--out", str(out)]) == 1
    assert "ip2p folder not found" in capsys.readouterr().err and not out.exists()
    (ip2p_folder / "seeds.json").write_text(json.dumps([["broken", [7]]]))  # only unusable records
    assert main(["data", "convert", "--src_format", "ip2p-folder", "--src", str(ip2p_folder), "--out", str(out)]) == 1
    assert "no usable samples" in capsys.readouterr().err and not (out / "manifest.json").exists()
