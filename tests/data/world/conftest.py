"""Fixtures shared by the world's test modules."""
import pytest

from _world_sample import render_split


@pytest.fixture(scope="module")
def sample():
    """150 default training images (shared by the consistency tests of a module)."""
    return render_split(150)
