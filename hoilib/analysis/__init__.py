"""Analyses the notebooks show: what a frozen CLIP knows (`probe`), what is inside a LAIN model (`introspect`), and
which predictions are right (`qualitative`)."""
from .introspect import (attention_mask, dimension_sizes, gamma_history, ho_patch_attention, ia_context_attention,
                         la_update_norms, layout_features, layout_map, named_shape, parameter_table, trace_shapes)
from .probe import (clip_probe, distinct_pairs, encode_images, encode_texts, mask_outside, probe_differences,
                    probe_summary, probe_sweep, render_split)
from .qualitative import pick_qualitative_images, prediction_correct, qualitative_picks, top_predictions

__all__ = ["clip_probe", "distinct_pairs", "encode_images", "encode_texts", "mask_outside", "probe_differences",
           "probe_summary", "probe_sweep", "render_split", "trace_shapes", "dimension_sizes", "named_shape",
           "attention_mask", "layout_map", "layout_features", "la_update_norms", "ia_context_attention",
           "ho_patch_attention", "gamma_history", "parameter_table", "prediction_correct", "top_predictions", "pick_qualitative_images",
           "qualitative_picks"]
