"""run_all's notion of an up-to-date notebook: the code cells decide; prose edits are copied, not re-run."""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "nbsync.py"


def _nb(path, markdown="# Title", code="x = 1", injected=False):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(markdown), nbformat.v4.new_code_cell(code)]
    if injected:
        nb.cells.insert(1, nbformat.v4.new_code_cell("PROFILE = 'default'", metadata={"tags": ["injected-parameters"]}))
        nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text="out\n")]
    nbformat.write(nb, path)
    return path


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_hash_depends_on_code_only(tmp_path):
    h = [_run("hash", _nb(tmp_path / f"{i}.ipynb", markdown=m, code=c)).stdout for i, (m, c) in
         enumerate([("# A", "x = 1"), ("# B, rewritten", "x = 1"), ("# A", "x = 2")])]
    assert h[0] == h[1] != h[2] and len(h[0].strip()) == 16


def test_prose_is_copied_into_the_executed_notebook(tmp_path):
    src = _nb(tmp_path / "src.ipynb", markdown="# New prose")
    run = _nb(tmp_path / "run.ipynb", markdown="# Old prose", injected=True)
    r = _run("prose", src, run)
    assert r.returncode == 0 and "1 prose cell" in r.stdout
    out = nbformat.read(run, as_version=4)
    assert out.cells[0].source == "# New prose"
    assert out.cells[2].outputs[0]["text"] == "out\n"  # outputs kept
    assert "injected-parameters" in out.cells[1].metadata["tags"]


@pytest.mark.parametrize("change", [{"code": "x = 2"}, {"markdown": "# A", "code": "x = 1\ny = 2"}])
def test_prose_refuses_when_code_differs(tmp_path, change):
    src = _nb(tmp_path / "src.ipynb", **change)
    run = _nb(tmp_path / "run.ipynb", injected=True)
    assert _run("prose", src, run).returncode == 1
    assert nbformat.read(run, as_version=4).cells[0].source == "# Title"
