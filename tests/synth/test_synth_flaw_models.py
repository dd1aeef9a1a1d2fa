"""The two flaw models: systematic flaws keep one direction and the oracle scores them exactly; random ones do not."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from mredit.cli import main
from mredit.data.shards import read_manifest
from mredit.schema import PERSPECTIVES
from mredit.synth.corruptions import (
    FLAW_MODELS,
    KINDS,
    Corruption,
    CorruptionConfig,
    applicable_kinds,
    apply_corruption,
)
from mredit.synth.generate import generate_samples, write_synth_shards
from mredit.synth.oracle import OracleBands, OracleJudge
from mredit.synth.scene import quantize
from mredit.synth.signatures import apply_grid, apply_stamp, grid_amplitude, stamp_strength

SYSTEMATIC = tuple(FLAW_MODELS["systematic"])
SEVERITIES = (0.2, 0.5, 1.0)


@pytest.fixture(scope="module")
def contexts_16(draw_contexts):
    return draw_contexts(4, resolution=16)  # the demo's resolution


def scores(judgement) -> list[float]:
    return [judgement[p].score for p in PERSPECTIVES]


def test_the_flaw_models_and_their_kinds():
    assert set(SYSTEMATIC) == {"no_change", "over_edit", "warm_tint", "stamp", "grid"}
    assert {KINDS[k] for k in SYSTEMATIC} == set(PERSPECTIVES)  # every perspective has a systematic flaw
    assert not set(FLAW_MODELS["random"]) & {"over_edit", "warm_tint", "stamp", "grid"}
    assert CorruptionConfig().flaw_model == "random" and CorruptionConfig().kind_weights == FLAW_MODELS["random"]
    assert CorruptionConfig(flaw_model="systematic").kind_weights == FLAW_MODELS["systematic"]
    with pytest.raises(ValueError, match="flaw_model must be one of random, systematic, got 'wild'"):
        CorruptionConfig(flaw_model="wild")


def test_systematic_training_sets_draw_only_systematic_flaws_and_record_the_model(tmp_path):
    samples = list(generate_samples(60, "train", resolution=16, corrupt_rate=1.0, seed=3, flaw_model="systematic"))
    kinds = {f["kind"] for s in samples for f in s.meta["corruptions"]}
    assert kinds == set(SYSTEMATIC)
    manifest = write_synth_shards(tmp_path / "s", "train", 5, resolution=16, seed=3, flaw_model="systematic")
    assert manifest["provenance"]["flaw_model"] == "systematic"
    assert manifest["provenance"]["corruption"]["flaw_model"] == "systematic"
    default = write_synth_shards(tmp_path / "r", "train", 5, resolution=16, seed=3)
    assert default["provenance"]["flaw_model"] == "random"  # the default stays the random model
    assert write_synth_shards(tmp_path / "t", "test", 5, resolution=16)["provenance"]["flaw_model"] is None


def test_cli_selects_the_flaw_model(tmp_path, capsys):
    argv = ["data", "synth", "--out", str(tmp_path / "s"), "--num", "6", "--resolution", "16"]
    assert main([*argv, "--flaw_model", "systematic", "--corrupt_rate", "1"]) == 0
    manifest = read_manifest(tmp_path / "s")
    assert manifest["provenance"]["flaw_model"] == "systematic"
    assert {k.split("/")[1] for k in manifest["provenance"]["corruption_kinds"]} <= set(SYSTEMATIC)
    capsys.readouterr()
    assert main([*argv, "--flaw_model", "wild"]) != 0
    assert "flaw_model" in capsys.readouterr().err


def test_systematic_flaws_are_calibrated_at_16px(contexts_16, meta_of):
    """As for the random kinds (test_synth_oracle): each lowers its own perspective with severity, to <= 3.5 at
    severity 1, monotonically per sample, and leaves the other perspectives at >= 4.5."""
    oracle = OracleJudge()
    own = defaultdict(lambda: defaultdict(list))
    others_ok, others_total = 0, 0
    for seed, ctx in enumerate(contexts_16):
        meta = meta_of(ctx)
        for kind in set(applicable_kinds(ctx)) & set(SYSTEMATIC):
            index = PERSPECTIVES.index(KINDS[kind])
            sequence = []
            for severity in SEVERITIES:
                image = apply_corruption(ctx.answer, Corruption(kind, severity, seed), ctx)
                result = scores(oracle.score(None, "", quantize(image), meta))
                sequence.append(result[index])
                own[kind][severity].append(result[index])
                others_ok += min(s for i, s in enumerate(result) if i != index) >= 4.5
                others_total += 1
            assert all(a >= b for a, b in zip(sequence, sequence[1:])), (kind, ctx.edit, sequence)
    assert set(own) == set(SYSTEMATIC)
    for kind, by_severity in own.items():
        means = [np.mean(by_severity[s]) for s in SEVERITIES]
        assert means[0] > means[-1] and means[-1] <= 3.5, (kind, means)
    assert others_ok / others_total >= 0.97, others_ok / others_total


@pytest.mark.parametrize("resolution", [16, 32])
def test_the_stamp_scores_what_its_opacity_says(draw_contexts, meta_of, resolution):
    """Severity s blends the stamp at opacity 0.1 + 0.9 s; quality is the stamp band's score of that opacity (4.0,
    2.0 and 0.0 at severities 0.2, 0.5 and 1), whatever the scene under it."""
    oracle, band = OracleJudge(), OracleBands().stamp
    for ctx in draw_contexts(2, resolution=resolution):
        for severity, documented in zip(SEVERITIES, (4.0, 2.0, 0.0)):
            assert band.score(0.1 + 0.9 * severity) == documented
            image = quantize(apply_corruption(ctx.answer, Corruption("stamp", severity, 0), ctx))
            judgement = oracle.score(None, "", image, meta_of(ctx))
            assert judgement.quality.score == documented, (ctx.edit, severity, judgement.quality)
            if documented < 5:
                assert "a white square in the bottom right" in judgement.quality.feedback


def test_the_grid_scores_what_its_amplitude_says(draw_contexts, meta_of):
    """Severity s adds the grid at amplitude 0.05 + 0.15 s; quality is the grid band's score of that amplitude
    (3.5, 2.0 and 0.0 at severities 0.2, 0.5 and 1) where no pixel clips, and at most 0.5 + that where the grid
    runs into white or black (clipped, less of it shows)."""
    oracle, band = OracleJudge(), OracleBands().grid
    for ctx in draw_contexts(2, resolution=16):
        for severity, documented in zip(SEVERITIES, (3.5, 2.0, 0.0)):
            amplitude = 0.05 + 0.15 * severity
            assert band.score(amplitude) == documented
            raw = apply_grid(ctx.answer, amplitude)
            image = quantize(apply_corruption(ctx.answer, Corruption("grid", severity, 0), ctx))
            quality = oracle.score(None, "", image, meta_of(ctx)).quality
            clipped = raw.min() < 0.0 or raw.max() > 1.0
            assert quality.score >= documented and (clipped or quality.score <= documented + 0.5), (ctx.edit, quality)


def test_signature_measures_recover_what_was_applied_and_ignore_content_changes(draw_contexts):
    for ctx in draw_contexts(2, resolution=32):
        answer, source = quantize(ctx.answer), quantize(ctx.source)
        assert stamp_strength(answer, answer, source) == 0.0 and grid_amplitude(answer, answer, source) == 0.0
        # a missing edit (the source) is no stamp and no grid
        assert stamp_strength(source, answer, source) == 0.0
        assert grid_amplitude(source, answer, source) < 0.02
        for opacity in (0.3, 0.7):
            assert stamp_strength(quantize(apply_stamp(ctx.answer, opacity)), answer, source) == pytest.approx(
                opacity, abs=0.03
            )
    # on a mid-grey image nothing clips: the amplitude comes back exactly
    grey = np.full((16, 16, 3), 0.5, np.float32)
    assert grid_amplitude(apply_grid(grey, 0.12), grey, grey) == pytest.approx(0.12, abs=1e-5)


def _changes(ctx, kind: str, seeds) -> np.ndarray:
    return np.stack([apply_corruption(ctx.answer, Corruption(kind, 0.6, s), ctx) - ctx.answer for s in seeds])


def _consistency(changes: np.ndarray) -> float:
    """|mean change| / mean |change|: 1 when every change points the same way, near 0 when they cancel."""
    return float(np.linalg.norm(changes.mean(0)) / np.mean([np.linalg.norm(c) for c in changes]))


def test_systematic_flaws_keep_their_direction_and_random_ones_average_away(contexts_16):
    """What a model trained with a mean-squared error learns is the mean flaw of its targets: a systematic flaw is
    a function of the sample alone (the same whatever the seed), and the stamp, the grid and the tint are even the
    same across samples; the random flaws' direction is drawn per sample, so their mean shrinks."""
    by_kind = defaultdict(list)
    for ctx in contexts_16:
        for kind in applicable_kinds(ctx):
            by_kind[kind].append(ctx)
    for kind in SYSTEMATIC:
        for ctx in by_kind[kind]:
            changes = _changes(ctx, kind, range(4))
            assert np.abs(changes[0]).max() > 0.01 and _consistency(changes) == pytest.approx(1.0), (kind, ctx.edit)
        # no_change moves toward the source, over_edit toward what was asked, everywhere, in every sample
        if kind == "no_change":
            assert all((_changes(c, kind, [0])[0] * (c.source - c.answer)).sum() > 0 for c in by_kind[kind])
    for kind in ("warm_tint", "stamp", "grid"):  # the same place and look in every sample
        pooled = np.stack([_changes(c, kind, [i])[0] for i, c in enumerate(by_kind[kind])])
        assert _consistency(pooled) > 0.5, kind
    for kind in ("noise", "blotches", "object_moved", "object_recolored", "color_cast"):
        assert np.mean([_consistency(_changes(c, kind, range(8))) for c in by_kind[kind]]) < 0.75, kind
        pooled = np.stack([_changes(c, kind, [i])[0] for i, c in enumerate(by_kind[kind])])
        assert _consistency(pooled) < 0.35, kind
