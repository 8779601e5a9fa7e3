"""hoilib.preflight on broken copies of the HICO-DET-format fixture (hoilib.fixture).

The fixture is built once (random DETR-R50 and CLIP, 10 + 10 images); each test breaks a copy of it and checks that
preflight names the problem, and only it.
"""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from hoilib import study
from hoilib.data import hicodet
from hoilib.data.detections import DetectionCache
from hoilib import preflight as pf
from hoilib.preflight import HICODET_IMAGES, preflight, preflight_main
from hoilib.data.vocab import ASSETS
from hoilib.fixture import CLIP_ARCH, build_fixture
from hoilib.models.clip_backbone import build_clip


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # DETR-R50 over 20 small images: extra threads only contend on a shared machine
    try:
        return build_fixture(tmp_path_factory.mktemp("fixture"), seed=3, n_train=10, n_test=10, progress=False)
    finally:
        torch.set_num_threads(n)


@pytest.fixture
def root(fixture, tmp_path):
    """A copy of the fixture's HICO-DET root to break."""
    return shutil.copytree(fixture.root, tmp_path / "hicodet")


def check(root, fixture, arch=CLIP_ARCH, profile="hicodet-smoke", weights=None):
    return preflight(root, fixture.clip_weights if weights is None else weights, arch, profile)


def test_the_fixture_passes(fixture):
    assert check(fixture.root, fixture) == []


def test_missing_test_annotations(root, fixture):
    (root / "instances_test2015.json").unlink()
    problems = check(root, fixture)
    assert len(problems) == 1
    assert problems[0].startswith(f"{root / 'instances_test2015.json'} is missing.")
    assert "hico_20160224_det.tar.gz" in problems[0]  # says where HICO-DET comes from


def test_missing_images(root, fixture):
    folder = hicodet.image_dir(root, "train")
    for name in ("HICO_train2015_00000004.jpg", "HICO_train2015_00000007.jpg"):
        (folder / name).unlink()
    assert check(root, fixture) == [f"{folder}: 2 of the 10 annotated images are missing (first: "
                                    f"HICO_train2015_00000004.jpg, HICO_train2015_00000007.jpg)"]


def test_missing_image_folder(root, fixture):
    shutil.rmtree(hicodet.image_dir(root, "test"))
    problems = check(root, fixture)
    assert len(problems) == 1 and problems[0].startswith(f"image folder {hicodet.image_dir(root, 'test')} is missing")


def test_resized_images(root, fixture):
    path = hicodet.image_dir(root, "test") / "HICO_test2015_00000001.jpg"  # the first image is always sampled
    with Image.open(path) as im:
        w, h = im.size
        im.resize((w // 2, h // 2)).save(path)
    problems = check(root, fixture)
    assert len(problems) == 1
    assert f"HICO_test2015_00000001.jpg is {w // 2}x{h // 2}, annotated {w}x{h}" in problems[0]
    assert "resized copies?" in problems[0]


def test_alphabetical_object_order(root, fixture):
    """The file on fredzzhang/hicodet's main branch: the same pairs, objects in alphabetical HICO order."""
    conventions = json.loads((ASSETS / "hico_categories.json").read_text())["object_index_conventions"]
    alpha_of_coco = np.asarray(conventions["hico_alphabetical_index"])
    path = root / "instances_test2015.json"
    d = json.loads(path.read_text())
    d["objects"] = conventions["hico_alphabetical_objects"]
    d["correspondence"] = [[h, int(alpha_of_coco[o]), v] for h, o, v in d["correspondence"]]
    for a in d["annotation"]:
        a["object"] = [int(alpha_of_coco[o]) for o in a["object"]]
    path.write_text(json.dumps(d))
    problems = check(root, fixture)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: objects[0] is 'airplane' but the vocabulary has 'person'")
    assert "alphabetical HICO order" in problems[0] and "to_coco_object_order" in problems[0]


def test_detections_missing_a_file(root, fixture):
    path = hicodet.detection_path(root, "test")
    cache = DetectionCache.load(path)
    keep = [i for i in range(cache.num_images) if cache.filenames[i] != "HICO_test2015_00000006.jpg"]
    DetectionCache.from_list([cache.filenames[i] for i in keep], [cache[i] for i in keep], 80).save(path)
    problems = check(root, fixture)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: no detections for 1 of the 10 annotated images "
                                  f"(first: HICO_test2015_00000006.jpg); rebuild it with `python -m hoilib.detect "
                                  f"--checkpoint detr-r50-hicodet.pth --root {root} --split test`")


def test_detections_without_features_or_missing(root, fixture):
    path = hicodet.detection_path(root, "train")
    c = DetectionCache.load(path)
    DetectionCache(c.filenames, c.offsets, c.boxes, c.scores, c.labels, c.num_classes).save(path)
    hicodet.detection_path(root, "test").unlink()
    problems = check(root, fixture)
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}: no feature vectors ('feats')")
    assert problems[1].startswith(f"detection cache {hicodet.detection_path(root, 'test')} is missing: cache the "
                                  f"DETR detections with `python -m hoilib.detect --checkpoint detr-r50-hicodet.pth "
                                  f"--root {root} --split test`")


def test_weights_of_another_architecture(fixture, tmp_path):
    # The fixture's tiny ViT where ViT-B/16 is configured: the message says what the file holds.
    problems = check(fixture.root, fixture, arch="ViT-B-16")
    assert len(problems) == 1
    assert problems[0].startswith(f"{fixture.clip_weights}: the weights do not fit CLIP ViT-B-16: ")
    assert problems[0].endswith("The file holds a ViT of width 64, patch 8, 4 layers at 64 px, text context 77.")
    # The built-in world's CLIP (text context 32) where the fixture's is configured.
    world = tmp_path / "world-clip.pt"
    torch.save({"model": build_clip("hoi-world-vit").state_dict()}, world)
    problems = check(fixture.root, fixture, weights=world)
    assert len(problems) == 1
    assert "positional_embedding (32, 128) in the file, (77, 64) in hoi-smoke-vit" in problems[0]
    # Not a CLIP file at all: the DETR checkpoint.
    problems = check(fixture.root, fixture, weights=fixture.detr_checkpoint)
    assert problems == [f"CLIP_WEIGHTS: {fixture.detr_checkpoint}: holds a dict with keys ['epoch', "
                        f"'model_state_dict'], not a CLIP state dict"]


def test_empty_root_lists_every_problem(fixture, tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    problems = check(root, fixture, weights=tmp_path / "ViT-B-16.pt")
    assert len(problems) == 7
    for split in ("train", "test"):
        assert any(p.startswith(f"{root / f'instances_{split}2015.json'} is missing") for p in problems)
        assert any(p.startswith(f"image folder {hicodet.image_dir(root, split)} is missing") for p in problems)
        assert any(f"--root {root} --split {split}`" in p for p in problems)
    assert problems[-1].startswith(f"CLIP_WEIGHTS: CLIP checkpoint not found: {tmp_path / 'ViT-B-16.pt'}")
    assert check(tmp_path / "nowhere", fixture)[0].startswith(f"HICODET_ROOT {tmp_path / 'nowhere'} is not a folder")


def test_real_profile_wants_the_real_counts(fixture):
    problems = check(fixture.root, fixture, profile="hicodet")
    assert problems == [f"{hicodet.annotation_path(fixture.root, s)}: 10 images, but HICO-DET's {s}2015 file lists "
                        f"{HICODET_IMAGES[s]} (a truncated or different file?)" for s in ("train", "test")]
    assert HICODET_IMAGES == {"train": 38118, "test": 9658}
    with pytest.raises(ValueError, match="preflight checks the profiles"):
        check(fixture.root, fixture, profile="smoke")


def test_command_line_exit_status(root, fixture, capsys):
    args = ["--profile", "hicodet-smoke", "--root", str(root), "--clip-weights", str(fixture.clip_weights)]
    assert preflight_main(args) == 0
    assert "are ready" in capsys.readouterr().out
    (root / "instances_train2015.json").unlink()
    shutil.rmtree(hicodet.image_dir(root, "test"))
    assert preflight_main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("preflight (hicodet-smoke): 2 problem(s) with HICODET_ROOT=")
    assert len(err) == 3 and all(line.startswith("  - ") for line in err[1:])


def test_unset_root_and_weights(fixture):
    problems = preflight("", "", CLIP_ARCH, "hicodet")
    assert len(problems) == 2
    assert problems[0].startswith("HICODET_ROOT is not set: give the folder that holds instances_{train,test}2015.json")
    assert problems[1].startswith("CLIP_WEIGHTS is not set")


def test_check_ready_for_a_notebook_config(root, fixture):
    cfg = study.experiment_config("hicodet-smoke", hicodet_root=str(root), clip_checkpoint=str(fixture.clip_weights))
    pf.check_ready(cfg)  # the intact copy: nothing raised
    hicodet.detection_path(root, "train").rename(root / "dets.npz")
    pf.check_ready(cfg.override({"data.detections_train": str(root / "dets.npz")}))
    (root / "instances_test2015.json").unlink()
    with pytest.raises(RuntimeError, match=r"the hicodet-smoke profile cannot run \(2 problems\):\n  .*"
                                           r"detections_train2015.npz is missing.*\n  .*instances_test2015.json is "
                                           r"missing"):
        pf.check_ready(cfg)
