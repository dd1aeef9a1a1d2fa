"""Artifact measures of the oracle's quality perspective: specks, blur and blocking, each relative to what the
exact answer (or the unedited source) legitimately shows, so that content changes never count as artifacts."""

from __future__ import annotations

import numpy as np

from mredit.synth.filters import local_range


def isolated(image: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Which candidate pixels have at most 3 look-alikes in their 5x5 window: specks, unlike the pixels along
    an edge. Only candidates are examined (few, usually none)."""
    found = np.zeros(candidates.shape, bool)
    ys, xs = np.nonzero(candidates)
    if len(ys):
        padded = np.pad(image, [(2, 2), (2, 2), (0, 0)], mode="edge")
        offsets = np.arange(5)
        windows = padded[ys[:, None, None] + offsets[None, :, None], xs[:, None, None] + offsets[None, None, :]]
        similar = (np.abs(windows - image[ys, xs][:, None, None]).max(-1) < 0.1).sum((1, 2))
        found[ys, xs] = similar <= 4  # itself included
    return found


def sharpness(image: np.ndarray) -> float:
    """Steepest neighbour step over the 3x3 range, on edge pixels: 1 for crisp edges, lower when blurred."""
    dx = np.abs(np.diff(image, axis=1, append=image[:, -1:])).max(-1)
    dy = np.abs(np.diff(image, axis=0, append=image[-1:])).max(-1)
    steep = np.maximum(dx, dy)
    steep = np.maximum.reduce([np.roll(steep, s, axis=a) for a in (0, 1) for s in (-1, 0, 1)])
    spread = local_range(image)
    edges = spread > 0.1
    return float(steep[edges].sum() / spread[edges].sum()) if edges.any() else 1.0


def block_deviations(image: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Per aligned block: its mean colour [nb, nb, 3] and its pixels' deviations from it [nb, nb, block^2 * 3]."""
    n = image.shape[0] // block * block
    tiles = image[:n, :n].reshape(n // block, block, n // block, block, 3).transpose(0, 2, 1, 3, 4)
    means = tiles.mean(axis=(2, 3))
    deviations = (tiles - means[:, :, None, None]).reshape(n // block, n // block, -1)
    return means, deviations


def blockiness(out: np.ndarray, ans: np.ndarray, src: np.ndarray, block: int) -> float:
    """Share of in-block detail lost, over blocks whose content is unchanged from the answer (or the source).

    Flattening a block keeps its mean and scales its deviations from the mean; a content change (an edit done
    or not, a moved object) does neither, so only blocks with the same mean and proportional deviations are
    compared, and content changes never look like compression artifacts.
    """
    m_out, d_out = block_deviations(out, block)
    lost, kept = 0.0, 0.0
    seen = np.zeros(m_out.shape[:2], bool)
    for reference in (ans, src):
        m_ref, d_ref = block_deviations(reference, block)
        norm_ref, norm_out = np.linalg.norm(d_ref, axis=-1), np.linalg.norm(d_out, axis=-1)
        cosine = (d_out * d_ref).sum(-1) / np.maximum(norm_ref * norm_out, 1e-6)
        # real detail (rms deviation > 0.1), not an anti-aliased fringe whose colour may legitimately change
        detailed = norm_ref > 0.1 * np.sqrt(d_ref.shape[-1])
        same = (np.abs(m_out - m_ref).max(-1) < 0.008) & (cosine > 0.9) & detailed & ~seen
        kept, lost = kept + norm_out[same].sum(), lost + norm_ref[same].sum()
        seen |= same
    return 1.0 - min(1.0, float(kept / lost)) if lost > 0 else 0.0
