"""Images: where a split's pixels come from (`ImageSource`: one uint8 array, or files on disk) and the two image
operations the study needs on boxes (`union_box`, `crop`).

Boxes are continuous 0-based xyxy pixels of the image (the dataset's convention).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image


@runtime_checkable
class ImageSource(Protocol):
    """Random access to the RGB images of a split, in annotation order."""

    def __len__(self) -> int: ...

    def load(self, i: int) -> np.ndarray:
        """Image i as uint8 [H, W, 3] RGB."""
        ...


class ArrayImages:
    """Images held in one uint8 array [N, H, W, 3] (a memmap is fine: only the requested image is read).

    `index` (optional, int [N']) selects and orders a subset without copying: image i is array[index[i]].
    """

    def __init__(self, array: np.ndarray, index: np.ndarray | None = None):
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise ValueError(f"expected a uint8 array [N, H, W, 3], got {array.dtype} {tuple(array.shape)}")
        self.array = array
        self.index = None if index is None else np.asarray(index, np.int64)
        if self.index is not None and self.index.size and (self.index.min() < 0 or self.index.max() >= len(array)):
            raise ValueError(f"index selects images outside [0, {len(array)})")

    def __len__(self) -> int:
        return len(self.array) if self.index is None else len(self.index)

    def load(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f"image {i} out of range [0, {len(self)})")
        j = i if self.index is None else int(self.index[i])
        return np.array(self.array[j])  # a private copy, never a view into the (memmapped) store


class FileImages:
    """Images read from `<image_dir>/<filename>` with PIL, converted to RGB (HICO-DET has a few greyscale JPEGs)."""

    def __init__(self, image_dir: str | Path, filenames: list):
        self.image_dir = Path(image_dir)
        self.filenames = list(filenames)

    def __len__(self) -> int:
        return len(self.filenames)

    def path(self, i: int) -> Path:
        return self.image_dir / self.filenames[i]

    def load(self, i: int) -> np.ndarray:
        path = self.path(i)
        if not path.is_file():
            where = "" if self.image_dir.is_dir() else f" (the folder {self.image_dir} does not exist)"
            raise FileNotFoundError(f"image {i} not found: {path}{where}")
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except OSError as e:  # truncated or not an image
            raise OSError(f"image {i} could not be read: {path}: {e}") from None

    def missing(self) -> list:
        """File names (in order) that do not exist under `image_dir`."""
        return [f for f in self.filenames if not (self.image_dir / f).is_file()]


def union_box(box_h: np.ndarray, box_o: np.ndarray) -> np.ndarray:
    """Smallest xyxy box covering both boxes ([..., 4] each)."""
    return np.concatenate([np.minimum(box_h[..., :2], box_o[..., :2]), np.maximum(box_h[..., 2:], box_o[..., 2:])],
                          -1)


def crop(image: np.ndarray, box, pad: float = 0.0) -> np.ndarray:
    """Crop an [H, W, 3] image to a continuous xyxy box grown by `pad` of its width / height on each side, outward to
    whole pixels, clipped to the image, at least 1 x 1 pixel."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    px, py = pad * (x2 - x1), pad * (y2 - y1)
    x1 = int(np.clip(np.floor(x1 - px), 0, w - 1))
    y1 = int(np.clip(np.floor(y1 - py), 0, h - 1))
    x2 = int(np.clip(np.ceil(x2 + px), x1 + 1, w))
    y2 = int(np.clip(np.ceil(y2 + py), y1 + 1, h))
    return image[y1:y2, x1:x2]
