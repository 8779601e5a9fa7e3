"""The CLIP probe (hoilib.analysis.probe): which pairs are ambiguous, the three views of a pair, the accuracies and
differences of a hand-made case with a CLIP whose answers are known, and the sweep over world settings."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hoilib.analysis import probe as P
from hoilib.config import ExperimentConfig, WorldConfig
from hoilib.data.annotations import HOIAnnotations
from hoilib.data.images import crop
from hoilib.data.world import VERSION_1, build_world, world_vocabulary
from hoilib.models.clip_backbone import preprocess

VOCAB = world_vocabulary()
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _colour(c: int) -> tuple:
    """The flat colour that stands for HOI class c in the hand-made images (not on a line, so that the mean colour
    of an image painted in a few of them is none of them)."""
    return (20 + 2 * c, 40 + (37 * c) % 180, 200 - c)


class ColourCLIP(torch.nn.Module):
    """A stand-in CLIP whose answers are known: text c embeds as the one-hot vector of class c, and an image as the
    fraction of its pixels painted in each class's colour. The top class of an image is the colour covering the
    most of it."""

    def __init__(self, size: int = 64):
        super().__init__()
        self.visual = type("Visual", (), {"image_size": size})()
        self.text_projection = torch.zeros(1, VOCAB.num_classes)
        self.colours = torch.tensor([_colour(c) for c in range(VOCAB.num_classes)], dtype=torch.float32)  # [C, 3]

    def encode_text(self, tokens):
        return torch.nn.functional.one_hot(tokens, VOCAB.num_classes).float()

    def encode_image(self, x):
        m, s = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
        rgb = ((x * s + m) * 255).round().permute(0, 2, 3, 1).reshape(len(x), -1, 1, 3)  # [B, HW, 1, 3]
        hit = (rgb - self.colours).abs().amax(-1) < 0.5  # [B, HW, C]
        return hit.float().mean(1) + 1e-6  # [B, C]; never all zero (normalised by the probe)


def _tokenizer(texts):
    index = {t: c for c, t in enumerate(VOCAB.hoi_prompts)}
    return torch.tensor([index[t] for t in texts])


def _cls(verb: str, obj: str) -> int:
    return int(VOCAB.object_verb_to_hoi[VOCAB.objects.index(obj), VOCAB.verbs.index(verb)])


def _hand_made():
    """Two 64 px images (continuous boxes; annotations store them + [1, 1, 0, 0]).

    Image 0: on a background painted as "kick ball", person A [2, 2, 14, 24] holds ball B [14, 8, 24, 20] (the union
    painted as "hold ball") and person C [34, 34, 50, 62] throws ball D [50, 40, 62, 52] (union painted as "throw
    ball"): both pairs are ambiguous, the background wins the whole image and each pair wins its own region.
    Image 1: person E [10, 10, 30, 50] holds a cup F [30, 20, 40, 30] on a background painted as "hold cup": not
    ambiguous, and every view is right."""
    hold_ball, throw_ball, kick_ball = _cls("hold", "ball"), _cls("throw", "ball"), _cls("kick", "ball")
    hold_cup = _cls("hold", "cup")
    A, B, C, D = [2, 2, 14, 24], [14, 8, 24, 20], [34, 34, 50, 62], [50, 40, 62, 52]
    E, F = [10, 10, 30, 50], [30, 20, 40, 30]
    images = np.zeros((2, 64, 64, 3), np.uint8)
    images[0] = _colour(kick_ball)
    images[0, 2:24, 2:24] = _colour(hold_ball)  # union of A and B
    images[0, 34:62, 34:62] = _colour(throw_ball)  # union of C and D
    images[1] = _colour(hold_cup)
    rows = [(0, A, B, hold_ball), (0, C, D, throw_ball), (1, E, F, hold_cup)]
    shift = np.array([1, 1, 0, 0], np.float64)
    hoi = np.array([r[3] for r in rows])
    ann = HOIAnnotations(
        filenames=["a.png", "b.png"], sizes=np.full((2, 2), 64), image_index=np.array([r[0] for r in rows]),
        boxes_h=np.array([r[1] for r in rows], np.float64) + shift,
        boxes_o=np.array([r[2] for r in rows], np.float64) + shift, hoi=hoi,
        object=VOCAB.hoi_classes[hoi, 1], verb=VOCAB.hoi_classes[hoi, 0], verbs=list(VOCAB.verbs),
        objects=list(VOCAB.objects), correspondence=VOCAB.correspondence)
    ann.validate()
    return ann, images


def test_distinct_pairs_and_ambiguity():
    ann, _ = _hand_made()
    # A second label on the A-B pair makes it one pair with two labels; a third image holds two people doing the
    # same thing to one ball: same object, same labels, so neither is ambiguous.
    extra = HOIAnnotations(
        filenames=ann.filenames + ["c.png"], sizes=np.full((3, 2), 64),
        image_index=np.r_[ann.image_index, 0, 2, 2], boxes_h=np.r_[ann.boxes_h, ann.boxes_h[:1], [[1, 1, 9, 9]],
                                                                      [[40, 40, 50, 50]]],
        boxes_o=np.r_[ann.boxes_o, ann.boxes_o[:1], [[20, 20, 30, 30]], [[20, 20, 30, 30]]],
        hoi=np.r_[ann.hoi, _cls("kick", "ball"), _cls("hold", "ball"), _cls("hold", "ball")],
        object=np.r_[ann.object, [VOCAB.objects.index("ball")] * 3], verb=np.r_[ann.verb, VOCAB.verbs.index("kick"),
                                                                                 [VOCAB.verbs.index("hold")] * 2],
        verbs=list(VOCAB.verbs), objects=list(VOCAB.objects), correspondence=VOCAB.correspondence)
    extra.validate()
    p = P.distinct_pairs(extra)
    assert p["image"].tolist() == [0, 0, 1, 2, 2]
    assert p["labels"][0] == {_cls("hold", "ball"), _cls("kick", "ball")} and p["labels"][1] == {_cls("throw", "ball")}
    assert p["ambiguous"].tolist() == [True, True, False, False, False]
    assert np.allclose(p["box_h"][0], [2, 2, 14, 24]) and np.allclose(p["box_o"][1], [50, 40, 62, 52])


def test_mask_outside_keeps_the_crop_region_in_place():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    box = [10.3, 5.0, 20.7, 30.2]
    out = P.mask_outside(image, box, pad=0.1)
    # crop's window: x from floor(10.3 - 1.04) = 9 to ceil(20.7 + 1.04) = 22, y from floor(5 - 2.52) = 2 to 33
    assert np.array_equal(out[2:33, 9:22], image[2:33, 9:22])
    assert np.array_equal(out[2:33, 9:22], crop(image, box, pad=0.1))
    mean = np.round(image.reshape(-1, 3).mean(0)).astype(np.uint8)
    outside = np.ones((40, 50), bool)
    outside[2:33, 9:22] = False
    assert (out[outside] == mean).all()
    assert (P.mask_outside(image, box, fill="grey")[outside] == 128).all()
    with pytest.raises(ValueError, match="fill must be"):
        P.mask_outside(image, box, fill="black")


def test_probe_of_a_hand_made_case():
    ann, images = _hand_made()
    fill = tuple(np.round(images[0].reshape(-1, 3).mean(0)).astype(int))
    assert fill not in {_colour(c) for c in range(VOCAB.num_classes)}  # the masked view's fill is no class
    res = P.clip_probe(ColourCLIP(), _tokenizer, VOCAB, ann, images, mean=MEAN, std=STD)
    pairs = res["pairs"]
    assert res["images"] == 2 and len(pairs) == 3
    # whole image: the background's class wins image 0 (wrong for both of its pairs); masked and crop: each pair's
    # own region wins
    assert pairs["whole"].tolist() == [False, False, True]
    assert pairs["masked"].tolist() == [True, True, True] and pairs["crop"].tolist() == [True, True, True]
    assert pairs["ambiguous"].tolist() == [True, True, False]
    n_ball, n_cup = (int((VOCAB.hoi_classes[:, 1] == VOCAB.objects.index(o)).sum()) for o in ("ball", "cup"))
    assert pairs["chance"].tolist() == pytest.approx([1 / n_ball, 1 / n_ball, 1 / n_cup])

    summary = P.probe_summary(res).set_index(["metric", "subset"])
    row = summary.loc[("top-1: whole image", "all pairs")]
    assert (row["n"], row["correct"], row["value_pct"]) == (3, 1, pytest.approx(100 / 3))
    # Wilson interval of 1 / 3 (Newcombe's formula): [6.15, 79.23] %
    assert (row["ci95_low_pct"], row["ci95_high_pct"]) == (pytest.approx(6.149, abs=1e-3),
                                                           pytest.approx(79.234, abs=1e-3))
    assert summary.loc[("top-1: union-box crop", "ambiguous pairs"), "value_pct"] == 100.0
    assert summary.loc[("top-1: chance", "ambiguous pairs"), "value_pct"] == pytest.approx(100 / n_ball)
    assert list(summary.index.get_level_values(0)).count("top-1: in-place masked") == 2

    diffs, intervals = P.probe_differences(res, replicates=500)
    d = diffs.set_index(["comparison", "subset"])
    assert d.loc[("crop - whole image", "all pairs"), "diff_pp"] == pytest.approx(200 / 3)
    assert d.loc[("crop - whole image", "ambiguous pairs"), ["n_pairs", "n_images"]].tolist() == [2, 1]
    assert d.loc[("crop - in-place masked", "all pairs"), "diff_pp"] == 0.0
    assert d.loc[("crop - in-place masked", "all pairs"), "verdict"] == ""
    # two images only: an image-level bootstrap cannot separate +67 pp from 0 (a resample of image 1 twice gives 0)
    assert d.loc[("crop - whole image", "all pairs"), "verdict"] == "inconclusive"
    iv, direction = intervals[("crop - whole image", "all pairs")]
    assert (iv.mean, iv.low, direction) == (pytest.approx(200 / 3), 0.0, 1)


def test_probe_resizes_every_view_with_preprocess():
    # The crops of the 64 px images are enlarged to the CLIP's input by preprocess (PIL bicubic); a stand-in that
    # records its inputs sees exactly preprocess's output for the first pair's crop.
    ann, images = _hand_made()
    seen = []

    class Recorder(ColourCLIP):
        def encode_image(self, x):
            seen.append(x.clone())
            return super().encode_image(x)

    P.clip_probe(Recorder(size=48), _tokenizer, VOCAB, ann, images, mean=MEAN, std=STD)
    whole, masked, crops = seen
    assert whole.shape == (2, 3, 48, 48) and masked.shape == crops.shape == (3, 3, 48, 48)
    expected = preprocess([crop(images[0], [2, 2, 24, 24], pad=P.CROP_PAD)], 48, MEAN, STD)
    assert torch.equal(crops[:1], expected)


def test_render_split_is_the_cached_split(tmp_path):
    cfg = ExperimentConfig().override({"data.cache_dir": str(tmp_path), "world.n_train": 4, "world.n_val": 2,
                                       "world.n_test": 5, "world.n_caption": 4})
    world = build_world(cfg, progress=False)
    split = P.render_split(cfg.world, "test", 5)
    assert np.array_equal(split.images, world.test_images)
    assert split.annotations.to_dict() == world.test.to_dict()
    assert np.array_equal(split.entities.boxes, world.test_entities.boxes)
    assert np.array_equal(split.scenes, world.scenes["test"])


def test_probe_sweep_on_a_tiny_case():
    settings = {"v1": dict(VERSION_1), "v2, scene bias 1": {"scene_bias": 1.0}}
    table = P.probe_sweep(ColourCLIP(), _tokenizer, WorldConfig(), settings, n_images=6, replicates=200,
                          progress=False)
    assert list(table.columns) == list(P.SWEEP_COLUMNS)
    assert list(dict.fromkeys(table["setting"])) == list(settings)
    v1, v2 = table[table["setting"] == "v1"], table[table["setting"] == "v2, scene bias 1"]
    assert set(v1["version"]) == {1} and v1["scene_bias"].isna().all() and v1["scene_home_pct"].isna().all()
    assert set(v2["version"]) == {2} and set(v2["scene_bias"]) == {1.0}
    # scene bias 1: every HOI image shows the home scene of a verb none of its people does
    assert set(v2["scene_home_pct"]) == {0.0}
    assert v2["people_per_image"].iloc[0] > v1["people_per_image"].iloc[0]
    assert set(table["comparison"]) <= set(P.COMPARISONS) and table["crowded_pct"].between(0, 100).all()
    # each row's gap is its two views' accuracy difference
    assert np.allclose(table["diff_pp"], table["b_top1_pct"] - table["a_top1_pct"])
    with pytest.raises(ValueError, match="unknown world fields"):
        P.probe_sweep(ColourCLIP(), _tokenizer, WorldConfig(), {"bad": {"scene_bais": 1.0}}, n_images=2,
                      progress=False)


def test_summary_and_differences_leave_out_a_subset_without_pairs():
    pairs = pd.DataFrame({"image": [0, 0, 1], "object": [3, 4, 3], "ambiguous": [False] * 3, "chance": [0.25] * 3,
                          "whole": [True, False, False], "masked": [True, True, False], "crop": [True, True, True]})
    res = {"images": 2, "image_map": 12.5, "pairs": pairs}
    summary = P.probe_summary(res)
    assert set(summary["subset"]) == {"test images", "all pairs"}
    assert summary.set_index("metric").loc["top-1: in-place masked", "correct"] == 2
    diffs, intervals = P.probe_differences(res, replicates=200)
    assert set(diffs["subset"]) == {"all pairs"} and len(intervals) == len(P.COMPARISONS)
    assert diffs.set_index("comparison").loc["crop - in-place masked", "diff_pp"] == pytest.approx(100 / 3)
