"""hoilib: a reproducible study of zero-shot HOI detection with CLIP (LAIN, HOICLIP components)."""
