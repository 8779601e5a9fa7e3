"""run_all.sh's command line: a mistyped notebook filter is an error, not a silent success."""
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_only_without_a_matching_notebook_fails():
    out = subprocess.run(["bash", str(REPO / "run_all.sh"), "smoke", "--only", "99"], capture_output=True, text=True,
                         timeout=600, cwd=REPO)
    assert out.returncode == 2
    assert "no notebook name starts with '99'" in out.stderr and "01_data_splits.ipynb" in out.stderr


def test_unknown_argument_fails():
    out = subprocess.run(["bash", str(REPO / "run_all.sh"), "--nope"], capture_output=True, text=True, timeout=60,
                         cwd=REPO)
    assert out.returncode == 2 and "unknown argument '--nope'" in out.stderr
