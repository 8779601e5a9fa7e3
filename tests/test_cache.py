"""The one cache rule: each artefact's key follows its config fields, its inputs and its code; writes are atomic."""
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hoilib import cache
from hoilib.config import ExperimentConfig

KEYS = {"world": cache.world_key, "detections": cache.detections_key, "clip": cache.clip_key,
        "run": cache.run_key, "predictions": cache.predictions_key}


@pytest.fixture(scope="module")
def code_copy(tmp_path_factory):
    """A private copy of hoilib's sources, to edit."""
    root = tmp_path_factory.mktemp("code") / "hoilib"
    shutil.copytree(cache.HOILIB, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _keys(cfg, root):
    return {name: f(cfg, root) for name, f in KEYS.items()}


# An edit of each file must change exactly these keys (the artefact built by that code and what is built from it).
EDITS = [
    ("data/world/scene.py", {"world", "detections", "clip", "run", "predictions"}),
    ("data/world/simdet.py", {"detections", "run", "predictions"}),
    ("models/clip_pretrain.py", {"clip", "run"}),
    ("models/clip_configs/hoi-world-vit.json", {"clip", "run"}),
    ("models/lain.py", {"run"}),
    ("engine.py", {"run"}),
    ("eval/hoi_map.py", {"predictions"}),
]


@pytest.mark.parametrize("path, changed", EDITS)
def test_editing_a_source_file_changes_the_keys_built_from_it(code_copy, path, changed):
    cfg = ExperimentConfig()
    before = _keys(cfg, code_copy)
    f = code_copy / path
    original = f.read_bytes()
    try:
        # a changed constant: for JSON a changed value, for Python an added line
        f.write_bytes(original.replace(b'"width": 128', b'"width": 96') if f.suffix == ".json"
                      else original + b"\n_EDITED = 1\n")
        assert f.read_bytes() != original
        after = _keys(cfg, code_copy)
    finally:
        f.write_bytes(original)
    assert {k for k in KEYS if after[k] != before[k]} == changed
    assert _keys(cfg, code_copy) == before  # the copy is back as it was


def test_config_fields_enter_the_keys_by_role():
    base = ExperimentConfig()
    k0 = _keys(base, cache.HOILIB)
    expect = {
        "world.clutter": (0.5, {"world", "detections", "clip", "run", "predictions"}),
        "detector.miss_rate": (0.2, {"detections", "run", "predictions"}),
        "eval.split": ("val", {"predictions"}),
        "clip.pretrain_lr": (2e-3, {"clip", "run"}),
        "clip.pretrain_threads": (7, {"clip", "run"}),  # threads change bits: in the key
        "train.num_threads": (7, {"run"}),
        "train.epochs": (3, {"run"}),
        "model.use_la": (False, {"run"}),
        "model.lambda_test": (1.0, {"predictions"}),
        "eval.ap": ("area", {"predictions"}),
        "model.zs_topk": (5, {"predictions"}),
        "model.gamma_scale": (0.0, {"predictions"}),
        "model.zs_rule": ("logit", {"predictions"}),
        "train.augment_flip": (False, {"run"}),
        "train.augment_scale": ([0.8, 1.0], {"run"}),
        "train.grid_workers": (4, set()),  # speed only
        "eval.batch_size": (3, set()),
        "model.kernel_impl": ("torch", set()),
        "data.cache_dir": ("elsewhere", set()),  # a place, not an input
        "name": ("other", set()),
    }
    for key, (value, changed) in expect.items():
        k1 = _keys(base.override({key: value}), cache.HOILIB)
        assert {k for k in KEYS if k1[k] != k0[k]} == changed, key


def test_thread_counts_enter_the_keys_as_used():
    a = ExperimentConfig().override({"train.num_threads": 0})
    b = ExperimentConfig().override({"train.num_threads": cache.threads(0)})
    assert cache.run_key(a) == cache.run_key(b)  # 0 means every core of this machine


def test_checkpoint_files_enter_by_content_not_by_path(tmp_path):
    a, b = tmp_path / "a" / "clip.pt", tmp_path / "b" / "weights.pt"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_bytes(b"weights 1")
    b.write_bytes(b"weights 1")
    cfg = ExperimentConfig().override({"clip.checkpoint": str(a)})
    moved = cfg.override({"clip.checkpoint": str(b)})
    assert cache.run_key(cfg) == cache.run_key(moved)
    b.write_bytes(b"other weights 2")  # another size: the digest memo keys on (path, size, mtime)
    assert cache.run_key(cfg) != cache.run_key(moved)
    assert cache.run_key_dict(ExperimentConfig())["inputs"]["clip"] == "random:hoi-world-vit"
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        cache.run_key(cfg.override({"clip.checkpoint": str(tmp_path / "nowhere.pt")}))


def test_hicodet_evaluation_data_enter_by_content(tmp_path):
    """Re-cached test detections (or a new annotation file) at the same path are new inputs of the metrics."""
    for name, text in (("instances_test2015.json", "gt"), ("detections_test2015.npz", "det 1"),
                       ("instances_train2015.json", "train"), ("detections_train2015.npz", "train det")):
        (tmp_path / name).write_text(text)
    cfg = ExperimentConfig().override({"data.dataset": "hicodet", "data.hicodet_root": str(tmp_path)})
    k = cache.predictions_key(cfg)
    (tmp_path / "detections_test2015.npz").write_text("detections 2")
    assert cache.predictions_key(cfg) != k
    assert cache.eval_inputs(cfg.override({"eval.split": "val"}))["annotations"] == cache.file_digest(
        tmp_path / "instances_train2015.json")  # the validation images are training images


def test_code_digest_names_a_missing_part(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cache.code_digest(("nope.py",), tmp_path)


def test_atomic_path_writes_all_or_nothing(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    with cache.atomic_path(target) as tmp:
        tmp.write_text("complete")
        assert not target.exists()
    assert target.read_text() == "complete"
    with pytest.raises(RuntimeError):
        with cache.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "complete" and sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]


def test_atomic_dir_keeps_the_first_complete_folder(tmp_path):
    final = tmp_path / "world" / "key"
    with cache.atomic_dir(final) as tmp:
        (tmp / "meta.json").write_text("first")
    with cache.atomic_dir(final) as tmp:  # a second writer of the same key: theirs is kept, ours removed
        (tmp / "meta.json").write_text("second")
    assert (final / "meta.json").read_text() == "first" and len(list(final.parent.iterdir())) == 1
    with pytest.raises(KeyboardInterrupt):
        with cache.atomic_dir(tmp_path / "world" / "other") as tmp:
            (tmp / "x").write_text("x")
            raise KeyboardInterrupt
    assert sorted(p.name for p in (tmp_path / "world").iterdir()) == ["key"]


def test_sweep_stale_removes_what_dead_processes_left(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    (tmp_path / f".checkpoint.pt.tmp-{pid}-0000abcd").write_bytes(b"")
    (tmp_path / f".world.tmp-{pid}-0000abcd").mkdir()
    import os
    mine = tmp_path / f".log.jsonl.tmp-{os.getpid()}-00000001"
    mine.write_text("being written")
    (tmp_path / "checkpoint.pt").write_bytes(b"result")
    removed = cache.sweep_stale(tmp_path)
    assert sorted(p.name for p in removed) == sorted([f".checkpoint.pt.tmp-{pid}-0000abcd", f".world.tmp-{pid}-0000abcd"])
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == sorted([mine.name, "checkpoint.pt"])


def test_sweep_stale_takes_a_zombie_for_ended(tmp_path):
    """A killed parent's workers that nobody reaps (a container whose first process reaps nothing) linger as zombies:
    what they left is still stale."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path("/proc") / str(child.pid) / "stat"
    for _ in range(200):  # wait until it has ended, without reaping it
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.05)
    else:
        pytest.fail("the child did not end")
    left = tmp_path / f".checkpoint.pt.tmp-{child.pid}-0000abcd"
    left.write_bytes(b"")
    try:
        assert cache.sweep_stale(tmp_path) == [left]
        assert not left.exists()
    finally:
        child.wait()
