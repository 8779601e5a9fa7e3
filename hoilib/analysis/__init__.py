"""Analyses the notebooks show: what a frozen CLIP knows (`probe`), what is inside a LAIN model (`introspect`), and
which predictions are right (`qualitative`)."""
from .introspect import ia_context_attention, layout_map, parameter_table, trace_shapes
from .probe import clip_probe, encode_images, encode_texts
from .qualitative import pick_qualitative_images, prediction_correct, qualitative_picks, top_predictions

__all__ = ["clip_probe", "encode_images", "encode_texts", "trace_shapes", "layout_map", "ia_context_attention",
           "parameter_table", "prediction_correct", "top_predictions", "pick_qualitative_images", "qualitative_picks"]
