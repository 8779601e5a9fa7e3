"""hoilib: a reproducible study of zero-shot HOI detection with CLIP (LAIN, HOICLIP components).

Entry points: `hoilib.config.ExperimentConfig` (every setting), `hoilib.data.build_dataset`,
`hoilib.models.build_model`, `hoilib.engine.train` / `infer`, `hoilib.runs.run_experiment` (cached runs),
`hoilib.eval.evaluate` (HICO-DET mAP). Submodules import torch lazily, so `import hoilib` is cheap.
"""
from .config import ExperimentConfig

__all__ = ["ExperimentConfig"]
