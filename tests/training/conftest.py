"""Fixtures for the training tests (helpers live in training_helpers.py, a unique module name)."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_helpers import write_split_shards


@pytest.fixture(scope="session")
def shard_dirs(tmp_path_factory) -> dict[str, Path]:
    """``train`` (4 shards of 8 samples, so two DDP ranks get disjoint shards) and ``val`` (one shard of 4)."""
    return write_split_shards(tmp_path_factory.mktemp("shards"))
