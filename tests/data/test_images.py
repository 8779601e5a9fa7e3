"""Image operations on boxes: crops and union boxes."""
import numpy as np

from hoilib.data.images import crop


def test_crop_pads_and_clips_to_the_image():
    img = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    c = crop(img, np.array([2.0, 2.0, 6.0, 6.0]), pad=0.25)  # 1 px of padding each side
    assert c.shape == (6, 6, 3) and (c == img[1:7, 1:7]).all()
    assert crop(img, np.array([0.0, 0.0, 10.0, 10.0]), pad=0.5).shape == (10, 10, 3)
