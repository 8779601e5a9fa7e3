"""Evaluation: HICO-DET HOI detection mAP (Default / Known-Object; Full / Rare / Non-rare; Unseen / Seen).

`evaluate(gt, pred, ...)` scores flat prediction arrays against `HOIAnnotations`; `save_predictions` /
`load_predictions` read and write the `.npz` prediction format of `python -m hoilib.eval`.
"""
from .hoi_map import (
    AP_METHODS, HICO_PROTOCOLS, IOU_RULES, MATLAB_11_POINTS, PRED_KEYS, EvalResult, PredictionError, evaluate,
    hicodet_rare, hicodet_unseen, load_predictions, matlab_colon, rare_from_counts, save_predictions,
    validate_predictions,
)

__all__ = ["AP_METHODS", "HICO_PROTOCOLS", "IOU_RULES", "MATLAB_11_POINTS", "PRED_KEYS", "EvalResult",
           "PredictionError", "evaluate", "hicodet_rare", "hicodet_unseen", "load_predictions", "matlab_colon",
           "rare_from_counts", "save_predictions", "validate_predictions"]
