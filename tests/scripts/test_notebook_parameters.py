"""Every notebook's parameters cell is one that papermill reads whole: run_all.sh passes PROFILE, RESULTS_DIR,
HICODET_ROOT and CLIP_CHECKPOINT by name, and a line papermill cannot parse (a comment holding '=') makes it warn
"Passed unknown parameter" for a parameter the notebook does have."""
import logging
from pathlib import Path

import nbformat
import papermill as pm
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PASSED = {"PROFILE", "RESULTS_DIR", "HICODET_ROOT", "CLIP_CHECKPOINT", "CACHE_DIR", "OVERRIDES"}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_line(nb, caplog):
    with caplog.at_level(logging.WARNING):
        params = pm.inspect_notebook(str(nb))
    assert not [r.getMessage() for r in caplog.records if "Unable to parse" in r.getMessage()]
    assert PASSED <= set(params), PASSED - set(params)
    n_lines = sum(1 for c in nbformat.read(nb, as_version=4).cells
                  if "parameters" in c.metadata.get("tags", []) for line in c.source.splitlines()
                  if line.strip() and not line.lstrip().startswith("#"))
    assert len(params) == n_lines  # each assignment line is a parameter papermill knows
