"""Shared test set-up: Triton's CPU interpreter, fixed seeds, and the real HICO-DET test annotations."""
import os

# Must be set before Triton is first imported, so that kernels run on CPU tensors (how CI checks them).
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from hoilib.models.clip_backbone import build_clip  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HICO_TEST_JSON = REPO.parent / "shared" / "hicodet" / "instances_test2015.json"


@pytest.fixture(autouse=True)
def _seed_everything():
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of many small operations: as fast on 2 cores, and not slowed down many-fold
    when other processes share the cores (OpenMP threads then wait on each other). Use with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def clip():
    """A randomly initialised world CLIP (seed 1234), one per test module."""
    torch.manual_seed(1234)
    return build_clip("hoi-world-vit")


@pytest.fixture
def hico_test_json() -> Path:
    """The real HICO-DET test annotation file (../shared/hicodet beside the checkout); skip when absent."""
    if not HICO_TEST_JSON.is_file():
        pytest.skip(f"real HICO-DET annotations not found at {HICO_TEST_JSON}")
    return HICO_TEST_JSON
