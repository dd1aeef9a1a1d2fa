"""Put the helpers module on the path and expose the shared fixture."""

from __future__ import annotations

import pytest
from models_helpers import make_module


@pytest.fixture
def module():
    return make_module()
