"""Shared test set-up: Triton's CPU interpreter, fixed seeds, and the real HICO-DET test annotations."""
import os

# Must be set before Triton is first imported, so that kernels run on CPU tensors (how CI checks them).
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HICO_TEST_JSON = REPO.parent / "shared" / "hicodet" / "instances_test2015.json"


@pytest.fixture(autouse=True)
def _seed_everything():
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def hico_test_json() -> Path:
    """The real HICO-DET test annotation file (../shared/hicodet beside the checkout); skip when absent."""
    if not HICO_TEST_JSON.is_file():
        pytest.skip(f"real HICO-DET annotations not found at {HICO_TEST_JSON}")
    return HICO_TEST_JSON
