#!/usr/bin/env python3
"""Remove volatile metadata (execution timestamps, papermill durations) from executed notebooks in place,
so that re-running an unchanged study leaves git diffs only where results changed."""
import sys

import nbformat


def strip(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    nb.metadata.get("widgets", None) and nb.metadata.pop("widgets")
    for cell in nb.cells:
        for key in ("papermill", "execution", "ExecuteTime"):
            cell.metadata.pop(key, None)
    nbformat.write(nb, path)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        strip(p)
