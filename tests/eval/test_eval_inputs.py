"""Evaluator inputs and ties: unreadable or malformed prediction files give one named error (and exit status 2 from
the CLI), non-finite scores are refused, and tied scores are ranked by (score desc, image asc, row asc)."""
import re
from pathlib import Path

import numpy as np
import pytest

from hoilib.data.annotations import HOIAnnotations
from hoilib.eval import PredictionError, evaluate, load_predictions, save_predictions
from hoilib.eval.__main__ import main as cli_main
from hoilib.eval.bench import synthetic_predictions

HICO_TEST_JSON = Path(__file__).resolve().parents[3] / "shared" / "hicodet" / "instances_test2015.json"
# Two HOI classes over (person, ball): 0 = hold ball, 1 = kick ball.
BOX, OBOX = [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 30.0]
FAR = [50.0, 50.0, 60.0, 60.0]


def _gt(images) -> HOIAnnotations:
    """images: per image a list of HOI classes, each annotated with (BOX, OBOX) (continuous; stored 1-based)."""
    one_based = lambda b: [b[0] + 1, b[1] + 1, b[2], b[3]]  # noqa: E731
    ann = [dict(boxes_h=[one_based(BOX)] * len(h), boxes_o=[one_based(OBOX)] * len(h), hoi=list(h),
                object=[1] * len(h), verb=list(h)) for h in images]
    return HOIAnnotations.from_dict(dict(
        filenames=[f"img_{i}.jpg" for i in range(len(images))], size=[[100, 100]] * len(images), annotation=ann,
        objects=["person", "ball"], verbs=["hold", "kick"], correspondence=[[0, 1, 0], [1, 1, 1]]))


def _pred(rows) -> dict:
    """rows: (image, hoi, box_h, score) with the object box OBOX."""
    i, h, bh, s = zip(*rows)
    return dict(image_index=np.array(i, np.int64), hoi=np.array(h, np.int64), boxes_h=np.array(bh, np.float32),
                boxes_o=np.array([OBOX] * len(rows), np.float32), score=np.array(s, np.float32))


# ---- prediction files: one error naming the file, exit status 2 --------------------------------------------------
@pytest.fixture
def files(tmp_path) -> dict:
    _gt([[0], [1], []]).to_json(tmp_path / "gt.json")
    good = save_predictions(tmp_path / "good.npz", **_pred([(0, 0, BOX, 0.9), (1, 1, BOX, 0.8)]))
    out = {"gt": tmp_path / "gt.json", "good": good}
    np.save(tmp_path / "single.npy", np.zeros(3))
    out["npy"] = tmp_path / "single.npy"
    out["npy_named_npz"] = tmp_path / "single_npy.npz"
    out["npy_named_npz"].write_bytes(out["npy"].read_bytes())
    out["truncated"] = tmp_path / "truncated.npz"
    out["truncated"].write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    out["text"] = tmp_path / "text.npz"
    out["text"].write_text("image_index,score\n0,0.5\n")
    bad_rows = {"inf": (1, 1, BOX, np.inf), "neg_inf": (1, 1, BOX, -np.inf), "nan": (1, 1, BOX, np.nan),
                "image_range": (5, 1, BOX, 0.8), "hoi_range": (1, 2, BOX, 0.8)}
    for name, row in bad_rows.items():
        out[name] = tmp_path / f"{name}.npz"
        np.savez(out[name], **_pred([(0, 0, BOX, 0.9), row]))
    return out


BAD_FILES = [
    ("npy", r"a single \.npy array, not an \.npz archive"),
    ("npy_named_npz", r"a single \.npy array, not an \.npz archive"),
    ("truncated", r"not a readable \.npz archive \(BadZipFile: "),
    ("text", r"not an \.npz archive \(a zip of \.npy arrays\); the file starts with b'image_'"),
    ("inf", r"score\[1\] = inf is not finite \(1 non-finite scores\)"),
    ("neg_inf", r"score\[1\] = -inf is not finite"),
    ("nan", r"score\[1\] = nan is not finite"),
    ("image_range", r"image_index\[1\] = 5 out of range \[0, 3\) \(3 images in the annotation file\)"),
    ("hoi_range", r"hoi\[1\] = 2 out of range \[0, 2\) \(2 HOI classes\)"),
]


@pytest.mark.parametrize("name, expected", BAD_FILES)
def test_bad_prediction_file_named(files, name, expected):
    with pytest.raises(PredictionError, match=rf"^{re.escape(str(files[name]))}: {expected}"):
        load_predictions(files[name], num_images=3, num_classes=2)


@pytest.mark.parametrize("name, expected", BAD_FILES)
def test_cli_one_line_error_exit_2(files, capsys, name, expected):
    code = cli_main(["--gt", str(files["gt"]), "--pred", str(files[name]), "--train-gt", str(files["gt"])])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert re.fullmatch(rf"error: {re.escape(str(files[name]))}: {expected}.*\n", captured.err), captured.err


def test_cli_good_file_and_other_errors(files, capsys, tmp_path):
    args = ["--gt", str(files["gt"]), "--pred", str(files["good"]), "--train-gt", str(files["gt"])]
    assert cli_main(args) == 0
    assert capsys.readouterr().out.startswith("Default (2 detections, iou official, ap 11p): Full 100.00")
    # A folder where a file is expected, and a rare list that is not integers: still one line and status 2.
    assert cli_main(["--gt", str(tmp_path), "--pred", str(files["good"]), "--train-gt", str(files["gt"])]) == 2
    assert capsys.readouterr().err == f"error: annotation file not found: {tmp_path}\n"
    (tmp_path / "rare.json").write_text("[1, true]")
    assert cli_main(args[:4] + ["--rare", str(tmp_path / "rare.json")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'rare.json'}: rare list must be a JSON list of integer " \
                                      f"class indices\n"
    np.save(tmp_path / "rare.npy", np.array([0.0, 1.0]))
    assert cli_main(args[:4] + ["--rare", str(tmp_path / "rare.npy")]) == 2
    assert "rare.npy: rare list must be a 1-D array of integer class indices" in capsys.readouterr().err


# ---- ties: (score desc, image asc, row asc) ------------------------------------------------------------------------
def test_tie_order_across_images_is_by_image():
    """Two images with one class-0 pair each; a false positive on image 1 and a true positive on image 0 tie at 0.5.

    The toolkit ranks image 0's detection first whatever the file order: TP at rank 1 (precision 1 at recall 0.5)
    gives 11-point AP 6/11; ranking the false positive first (the old file-order rule for the first file) gives 3/11.
    """
    gt = _gt([[0], [0]])
    fp, tp = (1, 0, FAR, 0.5), (0, 0, BOX, 0.5)
    for rows in ([fp, tp], [tp, fp]):
        res = evaluate(gt, _pred(rows), rare=[])
        assert res.num_tp[0] == 1 and res.ap[0] == pytest.approx(6 / 11, abs=1e-15)


def test_ties_rank_by_image_then_row():
    """Three tied detections: image 1's true positive is listed first but ranks after image 0's two, of which the
    earlier row takes the pair and the later one is a duplicate (false positive)."""
    gt = _gt([[0], [0]])
    a, b = (0, 0, BOX, 0.5), (0, 0, [0.0, 0.0, 10.0, 11.0], 0.5)  # both match image 0's pair
    other = (1, 0, BOX, 0.5)
    # Ranks: b (image 0, row 1: TP), a (image 0, row 2: duplicate), other (image 1: TP); file order would give
    # TP, TP, FP and AP 1.
    res = evaluate(gt, _pred([other, b, a]), rare=[])
    # TPs at ranks 1 and 3 of 3: precision 1 at recall 0.5, 2/3 at recall 1 -> (6 * 1 + 5 * 2/3) / 11.
    assert res.num_tp[0] == 2 and res.ap[0] == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-15)


def _interleave(img: np.ndarray, rng) -> np.ndarray:
    """A random permutation of the rows that keeps each image's rows in their order (images interleaved freely)."""
    perm = rng.permutation(len(img))
    slots = np.argsort(img[perm], kind="stable")  # positions of the new file, grouped by image
    out = np.empty_like(perm)
    out[slots] = np.sort(perm)[np.argsort(img[np.sort(perm)], kind="stable")]
    return out


def _by_row_order(pred: dict) -> dict:
    """The same ranking without ties: float64 scores lowered by row * 1e-9 (rounded scores differ by >= 0.01)."""
    return {**pred, "score": pred["score"].astype(np.float64) - np.arange(len(pred["score"])) * 1e-9}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ties_do_not_depend_on_image_order_in_file(seed):
    """Many ties (scores in steps of 0.1): any interleaving of the images gives the image-sorted file's result, which
    is the file-order ranking of that sorted file (what the evaluator computed before for such files)."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 2, rng.integers(0, 4)).tolist() for _ in range(30)]
    gt = _gt(images)
    m = 400
    img = np.sort(rng.integers(0, 30, m))
    bh = np.where(rng.random((m, 1)) < 0.6, np.array(BOX), np.array(FAR)) + rng.integers(0, 3, (m, 4)) * [0, 0, 1, 1]
    pred = dict(image_index=img, hoi=rng.integers(0, 2, m), boxes_h=bh.astype(np.float32),
                boxes_o=np.tile(np.array(OBOX, np.float32), (m, 1)),
                score=np.round(rng.random(m), 1).astype(np.float32))
    ref = evaluate(gt, _by_row_order(pred), rare=[], ap="area")
    for _ in range(3):
        perm = _interleave(img, rng)
        assert not np.array_equal(perm, np.arange(m))
        res = evaluate(gt, {k: v[perm] for k, v in pred.items()}, rare=[], ap="area")
        assert res.ap.tolist() == ref.ap.tolist() and res.num_tp.tolist() == ref.num_tp.tolist()
    assert evaluate(gt, pred, rare=[], ap="area").ap.tolist() == ref.ap.tolist()


@pytest.mark.skipif(not HICO_TEST_JSON.is_file(), reason=f"real HICO-DET annotations not found at {HICO_TEST_JSON}")
def test_rounded_scores_real_annotations_order_free():
    """Scores rounded to 2 decimals on the real test set: the per-class AP of an interleaved file equals the sorted
    file's, and the sorted file's equals its file-order ranking."""
    gt = HOIAnnotations.from_json(HICO_TEST_JSON)
    pred = synthetic_predictions(gt, 60_000, seed=5)
    pred["score"] = np.round(pred["score"], 2)
    order = np.argsort(pred["image_index"], kind="stable")
    srt = {k: v[order] for k, v in pred.items()}
    ref = evaluate(gt, srt)
    assert ref.ap.tolist() == evaluate(gt, _by_row_order(srt)).ap.tolist()
    perm = _interleave(srt["image_index"], np.random.default_rng(0))
    res = evaluate(gt, {k: v[perm] for k, v in srt.items()})
    assert res.ap.tolist() == ref.ap.tolist() and res.full == ref.full
