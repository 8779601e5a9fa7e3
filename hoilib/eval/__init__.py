"""Evaluation: HICO-DET HOI detection mAP (Default / Known-Object; Full / Rare / Non-rare; Unseen / Seen).

`evaluate(gt, pred, ...)` scores flat prediction arrays against `HOIAnnotations`; `save_predictions` /
`load_predictions` read and write the `.npz` prediction format of `python -m hoilib.eval`. The class lists (rare,
the zero-shot protocols) live in `hoilib.data.splits`; `ranking_ap` (eval/ap.py) is the AP of a plain ranking.
"""
from .ap import ranking_ap
from .hoi_map import (
    AP_METHODS, IOU_RULES, MATLAB_11_POINTS, PRED_KEYS, EvalResult, PredictionError, evaluate, load_predictions,
    matlab_colon, save_predictions, validate_predictions,
)

__all__ = ["AP_METHODS", "IOU_RULES", "MATLAB_11_POINTS", "PRED_KEYS", "EvalResult", "PredictionError", "evaluate",
           "load_predictions", "matlab_colon", "ranking_ap", "save_predictions", "validate_predictions"]
