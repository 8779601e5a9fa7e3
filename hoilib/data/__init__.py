"""Data: HICO-DET annotations and detections (the real path) and the built-in HOI world (the embedded default)."""
from .annotations import AnnotationError, HOIAnnotations
from .detections import DetectionCache, DetectionCacheError, Detections
from .vocab import Vocabulary, hicodet_vocabulary
from .images import ArrayImages, FileImages, ImageSource, crop, union_box
from .dataset import HOIDataset, HOISplit, build_dataset
from .detr_import import cache_detections, detr_postprocess, export_detection_dir, import_detection_dir
from .hicodet import check_against_vocabulary, load_hicodet, to_coco_object_order
from .splits import (filter_training, hicodet_protocol, hicodet_protocols, hicodet_rare, rare_classes,
                     split_statistics)

__all__ = ["AnnotationError", "HOIAnnotations", "DetectionCache", "DetectionCacheError", "Detections",
           "Vocabulary", "hicodet_vocabulary",
           "ArrayImages", "FileImages", "ImageSource", "crop", "union_box", "HOIDataset", "HOISplit", "build_dataset",
           "cache_detections", "detr_postprocess", "export_detection_dir", "import_detection_dir",
           "check_against_vocabulary", "load_hicodet", "to_coco_object_order",
           "filter_training", "hicodet_protocol", "hicodet_protocols", "hicodet_rare", "rare_classes",
           "split_statistics"]
