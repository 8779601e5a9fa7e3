"""World version 1 stays reachable byte for byte: a tiny version 1 world hashes as it did before version 2 existed
(the hashes below were computed with the generator as it was then, by `_world_fingerprint.fingerprint`)."""
from __future__ import annotations

import pytest

from hoilib.data.world import VERSION_1

from _world_fingerprint import fingerprint

# n_train 8, n_test 4, n_caption 4, every other field at the version 1 defaults (VERSION_1)
TINY_V1 = {
    "caption_images.npy": "50e6eb826f07ce98c99798e4483b92393e208e80c4d72fca2aa4df0d834a774a",
    "captions.json": "cf14fd48c9e7adf3dd9d8adb1bffb0c93b90b5bee5229063cd60bcc17ee99a2c",
    "detections_test.npz": "214bf1f3c9f9369bc1339328ee7d3cc860a577a3653264d306756d535df1ecfa",
    "detections_train.npz": "0aa319054c91631ea4330fd8f89951cf9dfc5ba3c5a41d27aebb054ca66b19a4",
    "entities_test.npz": "d27bea6394c2cea0f03acbd79e575b5bdcf7d1cf6361c64c4d6d71ee7a192a22",
    "entities_train.npz": "8b8b820abcd72cd0817d71defbbcbcfb8ade1ad14fa2ae4cc7283ba486fcfa10",
    "instances_test.json": "7f7a5b805926e8c00cc927d0fd2019c8db67a1e2046348c257da090a0b49d1f6",
    "instances_train.json": "6ac2025d4d446ac792ea2c0344c5be1895b97816dde77d12c48d8e793c97f031",
    "meta.json:counts": "edf00910a3fb0f305bed567b391536b3bf87dbe4c361ebbc74fda033372df171",
    "protocols.json": "16719ee4676abf17fdf958739f3c23e002e91c7f2fedef59e826465ee2ac0f9e",
    "test_images.npy": "83df332124686851dbde52cb91729b3a7b6b48b12c926820d5cfaa9e77ff8070",
    "train_images.npy": "bb83aa4285fa217dc9af73dd503cdf7fabe99733637d4d87fcdd1d7ef6da023c",
}
TINY = {"n_train": 8, "n_test": 4, "n_caption": 4, **VERSION_1}


@pytest.mark.parametrize("n_val", [0, 3])
def test_tiny_version_1_world_is_byte_identical(tmp_path, n_val):
    """Every artefact; a validation split (its own stream) leaves the others as they were."""
    got = fingerprint({**TINY, "n_val": n_val}, tmp_path)
    assert {k: v for k, v in got.items() if got[k] != TINY_V1[k]} == {}
    assert set(got) == set(TINY_V1)


def test_version_2_is_another_world(tmp_path):
    """The same fields with version 2 give other images, annotations and captions (the pins above are not
    trivially met by any world)."""
    got = fingerprint({**TINY, "version": 2, "n_val": 0}, tmp_path)
    for name in ("train_images.npy", "test_images.npy", "caption_images.npy", "instances_train.json",
                 "captions.json"):
        assert got[name] != TINY_V1[name], name
