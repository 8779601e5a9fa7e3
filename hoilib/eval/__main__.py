"""Command line: `python -m hoilib.eval --gt instances_test2015.json --pred preds.npz [options]`.

Prints Full / Rare / Non-rare (and Unseen / Seen with a protocol) mAP in percent, or with `--json` one JSON object
with keys full, rare, non_rare, per_class (AP per class, percent), num_gt, settings, and unseen / seen with a
protocol. Bad inputs exit with status 2 and a one-line `error: ...` on stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hoilib.data.annotations import AnnotationError, HOIAnnotations
from hoilib.data.splits import HICODET_PROTOCOL_KEYS, hicodet_protocol, rare_from_counts
from hoilib.eval.hoi_map import AP_METHODS, IOU_RULES, PredictionError, evaluate, load_predictions


def _read_index_list(path: str, what: str) -> np.ndarray:
    """A JSON list of class indices (or a 1-D integer .npy array) as int64; ValueError naming the file otherwise."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {p}")
    if p.suffix == ".npy":
        try:
            a = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{p}: {what} is not a readable .npy array ({e})") from None
        if not isinstance(a, np.ndarray) or a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise ValueError(f"{p}: {what} must be a 1-D array of integer class indices")
        return a.astype(np.int64)
    try:
        with open(p, encoding="utf-8") as f:
            v = json.load(f)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8
        raise ValueError(f"{p}: {what} must be a JSON list of class indices ({e})") from None
    if not isinstance(v, list) or not all(type(x) is int for x in v):  # not bool, not 3.0
        raise ValueError(f"{p}: {what} must be a JSON list of integer class indices")
    try:
        return np.asarray(v, np.int64)
    except OverflowError:
        raise ValueError(f"{p}: {what} has a class index beyond int64") from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m hoilib.eval",
                                 description="HICO-DET HOI detection mAP (official toolkit protocol).")
    ap.add_argument("--gt", required=True, help="annotation file in the instances_*.json format")
    ap.add_argument("--pred", required=True, help="predictions .npz: image_index, boxes_h, boxes_o, hoi, score")
    ap.add_argument("--protocol", choices=sorted(HICODET_PROTOCOL_KEYS), help="HICO-DET zero-shot protocol (Unseen/Seen)")
    ap.add_argument("--unseen", metavar="FILE", help="JSON list (or .npy) of unseen class indices, any vocabulary")
    ap.add_argument("--rare", metavar="FILE", help="JSON list (or .npy) of rare class indices "
                                                   "(default: the official HICO-DET 138 when there are 600 classes)")
    ap.add_argument("--train-gt", metavar="PATH", help="training annotations: rare = classes with < 10 pairs there")
    ap.add_argument("--known-object", action="store_true", help="Known-Object setting")
    ap.add_argument("--include-empty", action="store_true",
                    help="count detections on images without annotations as false positives (official toolkit)")
    ap.add_argument("--iou-rule", choices=IOU_RULES, default="official",
                    help="official: min IoU >= 0.5; pocket (UPT/LAIN): > 0.5")
    ap.add_argument("--ap", choices=AP_METHODS, default="11p", help="11p: VOC-2007 11-point; area: all-point")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a summary line")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.protocol and args.unseen:
            raise ValueError("give --protocol or --unseen, not both")
        if args.rare and args.train_gt:
            raise ValueError("give --rare or --train-gt, not both")
        gt = HOIAnnotations.from_json(args.gt)
        pred = load_predictions(args.pred, gt.num_images, gt.num_classes)
        rare = None
        if args.rare:
            rare = _read_index_list(args.rare, "rare list")
        elif args.train_gt:
            rare = rare_from_counts(HOIAnnotations.from_json(args.train_gt).class_counts())
        elif gt.num_classes != 600:
            raise ValueError(f"the default rare list is HICO-DET's, which needs 600 classes, but {args.gt} has "
                             f"{gt.num_classes}: give --rare FILE or --train-gt PATH")
        unseen = None
        if args.protocol:
            if gt.num_classes != 600:
                raise ValueError(f"--protocol {args.protocol} is a HICO-DET protocol (600 classes) but {args.gt} has "
                                 f"{gt.num_classes} classes; use --unseen FILE")
            unseen = hicodet_protocol(args.protocol)
        elif args.unseen:
            unseen = _read_index_list(args.unseen, "unseen list")
        res = evaluate(gt, pred, rare=rare, unseen=unseen, iou_rule=args.iou_rule, ap=args.ap,
                       known_object=args.known_object, include_empty=args.include_empty)
    except (OSError, AnnotationError, PredictionError, ValueError) as e:  # OSError: missing or unreadable file
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res.to_dict()))
    else:
        setting = "Known-Object" if args.known_object else "Default"
        print(f"{setting} ({res.settings['num_detections']} detections, iou {args.iou_rule}, ap {args.ap}): "
              f"{res.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
