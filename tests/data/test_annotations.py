"""The annotation reader: malformed entries of an instances_*.json raise AnnotationError naming file and entry, and
nothing is coerced (integral floats, numeric strings and booleans are not integers; file names are distinct strings;
`empty` agrees with the annotations)."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from hoilib.data import AnnotationError, HOIAnnotations

FIX_JSON = Path(__file__).resolve().parents[1] / "fixtures" / "hicodet" / "instances_test2015.json"
IMG0 = r"annotation\[0\] \(HICO_test2015_00000001.jpg\)"
IMG2 = r"annotation\[2\] \(HICO_test2015_00000003.jpg\)"


def _set(*path_value):
    """An edit setting d[p0][p1]...[pk] = value."""
    *path, last, value = path_value

    def edit(d):
        for p in path:
            d = d[p]
        d[last] = value
    return edit


def _write(tmp_path: Path, edit) -> Path:
    d = json.loads(FIX_JSON.read_text())
    edit(d)
    path = tmp_path / "instances_test2015.json"
    path.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize("edit, expected", [
    # class indices: only JSON integers (245.7 was read as 245, "7" as 7, true as 1, 7.0 as 7)
    (_set("annotation", 0, "hoi", 1, 245.7), rf"{IMG0}: hoi\[1\]: 245.7 \(float\) is not an integer"),
    (_set("annotation", 0, "hoi", 1, 22.0), rf"{IMG0}: hoi\[1\]: 22.0 \(float\) is not an integer"),
    (_set("annotation", 0, "object", 0, "1"), rf"{IMG0}: object\[0\]: '1' \(str\) is not an integer"),
    (_set("annotation", 0, "verb", 1, True), rf"{IMG0}: verb\[1\]: True \(bool\) is not an integer"),
    (_set("annotation", 0, "hoi", 0, 2 ** 64), rf"{IMG0}: hoi\[0\]: {2 ** 64} does not fit in 64 bits"),
    (_set("annotation", 0, "verb", 0, None), rf"{IMG0}: verb\[0\]: None \(NoneType\) is not an integer"),
    # structure: len() of a scalar was a bare TypeError
    (_set("annotation", 2, "hoi", 5), rf"{IMG2}: 'hoi' must be a list, got 5 \(int\)"),
    (_set("annotation", 2, "boxes_o", {}), rf"{IMG2}: 'boxes_o' must be a list, got {{}} \(dict\)"),
    (_set("annotation", 2, [1, 2]), rf"{IMG2} must have keys \('boxes_h', 'boxes_o', 'hoi', 'object', 'verb'\)"),
    (_set("size", 7), r"'size': must be a list, got 7 \(int\)"),
    (_set("filenames", 5), r"'filenames': must be a list, got 5 \(int\)"),
    # box coordinates: finite numbers, four per box
    (_set("annotation", 0, "boxes_h", 0, 2, "24"), rf"{IMG0}: boxes_h\[0\]: x2: '24' \(str\) is not a number"),
    (_set("annotation", 0, "boxes_o", 1, 0, False), rf"{IMG0}: boxes_o\[1\]: x1: False \(bool\) is not a number"),
    (_set("annotation", 0, "boxes_h", 1, [4.0, 4.0, 24.0]),
     rf"{IMG0}: boxes_h\[1\]: \[4.0, 4.0, 24.0\] \(list\) is not a list \[x1, y1, x2, y2\]"),
    (_set("annotation", 0, "boxes_h", 1, 10 ** 400), rf"{IMG0}: boxes_h\[1\]: 1000.* \(int\) is not a list"),
    (_set("annotation", 0, "boxes_h", 1, 3, 10 ** 400), rf"{IMG0}: boxes_h\[1\]: y2: 1000.* is too large for a float"),
    (_set("annotation", 2, "boxes_o", 0, 1, float("nan")), rf"{IMG2}: boxes_o\[0\]: y1: nan is not a finite number"),
    (_set("annotation", 2, "boxes_o", 0, 3, float("-inf")), rf"{IMG2}: boxes_o\[0\]: y2: -inf is not a finite"),
    # file names: distinct non-empty strings
    (_set("filenames", 2, False), r"filenames\[2\]: False \(bool\) is not a string"),
    (_set("filenames", 3, "HICO_test2015_00000002.jpg"),
     r"filenames\[3\]: 'HICO_test2015_00000002.jpg' repeats filenames\[1\]"),
    (_set("filenames", 4, ""), r"filenames\[4\]: empty file name"),
    # image sizes: positive integers
    (_set("size", 2, [48.0, 64]), r"size\[2\] \(HICO_test2015_00000003.jpg\): width: 48.0 \(float\) is not an int"),
    (_set("size", 2, "48x64"), r"size\[2\] \(HICO_test2015_00000003.jpg\): '48x64' \(str\) is not a list \[width"),
    (_set("size", 2, [0, 64]), r"size\[2\] \(HICO_test2015_00000003.jpg\): \[0, 64\] must be a positive"),
    # `empty`: exactly the ascending positions of the images without pairs (here [1])
    (_set("empty", []), r"annotation\[1\] \(HICO_test2015_00000002.jpg\): has no pairs but is not listed in 'empty'"),
    (_set("empty", [1, 2]), r"empty\[1\]: annotation\[2\] \(HICO_test2015_00000003.jpg\) has 2 pairs"),
    (_set("empty", [1, 1]), r"empty\[1\]: 1 is repeated or out of order"),
    (_set("empty", [1.0]), r"empty\[0\]: 1.0 \(float\) is not an integer"),
    (_set("empty", [9]), r"empty\[0\]: 9 is not an image position \[0, 5\)"),
    (_set("empty", "1"), r"'empty': must be a list, got '1' \(str\)"),
    # the class tables
    (_set("objects", 3, 7), r"objects\[3\]: 7 \(int\) is not a string"),
    (_set("correspondence", 5, [5, 1.5, 3]), r"correspondence\[5\]: object: 1.5 \(float\) is not an integer"),
    (_set("correspondence", 5, [4, 4, 17]),
     r"correspondence\[5\] = \[4, 4, 17\]: HOI class 4 repeats correspondence\[4\]; the table must list"),
    (_set("correspondence", 5, [5, 80, 3]), r"correspondence\[5\] = \[5, 80, 3\]: object index 80 out of range"),
])
def test_bad_entries_name_file_and_entry(tmp_path, edit, expected):
    path = _write(tmp_path, edit)
    with pytest.raises(AnnotationError) as e:
        HOIAnnotations.from_json(path)
    assert re.match(rf"{re.escape(str(path))}: {expected}", str(e.value)), str(e.value)


def test_unreadable_bytes_name_the_file(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"filenames": ["caf\xe9.jpg"]}')  # not UTF-8
    with pytest.raises(AnnotationError, match=rf"^{re.escape(str(path))}: malformed JSON: .*utf-8"):
        HOIAnnotations.from_json(path)
    path.write_text("[" * 100_000 + "]" * 100_000)  # deeper than the JSON parser's recursion limit
    with pytest.raises(AnnotationError, match=rf"^{re.escape(str(path))}: malformed JSON"):
        HOIAnnotations.from_json(path)


def test_valid_file_reads_exactly(tmp_path):
    d = json.loads(FIX_JSON.read_text())
    ann = HOIAnnotations.from_json(FIX_JSON)
    assert ann.to_dict() == d and ann.empty == [1]
    assert ann.hoi.dtype == np.int64 and ann.boxes_h.dtype == np.float64 and ann.sizes.dtype == np.int64
    # Integer box coordinates are numbers too (read as the same value); a missing `empty` is derived.
    d["annotation"][0]["boxes_h"][0] = [4, 4, 24, 46]
    del d["empty"]
    path = tmp_path / "ints.json"
    path.write_text(json.dumps(d))
    back = HOIAnnotations.from_json(path)
    assert back.boxes_h[0].tolist() == [4.0, 4.0, 24.0, 46.0] and back.empty == [1]
