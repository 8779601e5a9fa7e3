"""Data: HICO-DET annotations and detections (the real path) and the built-in HOI world (the embedded default)."""
from .annotations import AnnotationError, HOIAnnotations
from .detections import DetectionCache, DetectionCacheError, Detections
from .vocab import Vocabulary, hicodet_vocabulary

__all__ = ["AnnotationError", "HOIAnnotations", "DetectionCache", "DetectionCacheError", "Detections",
           "Vocabulary", "hicodet_vocabulary"]
