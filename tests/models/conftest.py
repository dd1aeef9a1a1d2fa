"""Put the helpers module on the path and expose the shared fixture."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from models_helpers import make_module  # noqa: E402


@pytest.fixture
def module():
    return make_module()
