"""The synthetic world's vocabulary covers every word its instructions and the oracle's feedback use."""

from __future__ import annotations

import numpy as np

from mredit.synth.generate import generate_samples
from mredit.synth.oracle import OracleJudge
from mredit.synth.vocabulary import synth_words, words_of


def test_vocabulary_is_sorted_and_unique():
    words = synth_words()
    assert list(words) == sorted(set(words)) and len(words) > 100
    assert "color" not in words and "ref" not in words  # template fields ({color}) are not words of the world


def test_every_instruction_and_feedback_word_is_in_the_vocabulary():
    vocabulary, oracle, seen = set(synth_words()), OracleJudge(), set()
    # corrupted training targets: the oracle's feedback on every kind of flaw
    for sample in generate_samples(300, "train", resolution=16, corrupt_rate=1.0, seed=7, with_rewards=True):
        seen.update(words_of(sample.instruction))
        for perspective in (sample.reward.following, sample.reward.preserving, sample.reward.quality):
            seen.update(words_of(perspective.feedback))
    # a model that does nothing: the feedback on missing edits ("still there", "was not applied", ...)
    for sample in generate_samples(70, "test", resolution=16, seed=8):
        judgement = oracle.score(sample.source, sample.instruction, np.asarray(sample.source), sample.meta)
        seen.update(words_of(f"{judgement.following.feedback} {judgement.preserving.feedback}"))
    assert seen - vocabulary == set()
    assert {"still", "partly", "blurry", "moved"} <= seen  # the feedback really was exercised
