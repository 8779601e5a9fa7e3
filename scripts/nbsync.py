#!/usr/bin/env python3
"""What decides whether an executed notebook is up to date, and how a prose edit reaches it without a re-run.

    nbsync.py hash NOTEBOOK       hash of the code cells (their sources, in order): what the outputs depend on
    nbsync.py prose SOURCE RUN    copy SOURCE's Markdown cells into the executed notebook RUN (same cell layout,
                                  papermill's injected-parameters cell aside); exit 1 when the layouts differ
"""
import hashlib
import sys

import nbformat


def _cells(nb):
    return [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]


def code_hash(path: str) -> str:
    nb = nbformat.read(path, as_version=4)
    h = hashlib.sha256()
    for c in nb.cells:
        if c.cell_type == "code":
            h.update(c.source.encode() + b"\0")
    return h.hexdigest()[:16]


def sync_prose(source: str, run: str) -> int:
    src, out = nbformat.read(source, as_version=4), nbformat.read(run, as_version=4)
    a, b = _cells(src), _cells(out)
    if [c.cell_type for c in a] != [c.cell_type for c in b] or any(
            x.source != y.source for x, y in zip(a, b) if x.cell_type == "code"):
        return 1
    changed = 0
    for x, y in zip(a, b):
        if x.cell_type == "markdown" and x.source != y.source:
            y.source, changed = x.source, changed + 1
    if changed:
        nbformat.write(out, run)
        print(f"nbsync: {changed} prose cell(s) of {run} refreshed from {source}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "hash":
        print(code_hash(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "prose":
        sys.exit(sync_prose(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
