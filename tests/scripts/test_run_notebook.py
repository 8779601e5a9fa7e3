"""Executed notebooks appear only when complete: a killed run leaves no half-run notebook where a result belongs."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_notebook.py"


def _notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _run(source, target, **kw):
    return subprocess.Popen([sys.executable, str(SCRIPT), str(source), str(target)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_a_killed_run_leaves_no_result_and_the_next_run_cleans_up(tmp_path):
    started = tmp_path / "started"
    slow = _notebook(tmp_path / "01_slow.ipynb", f"open({str(started)!r}, 'w').write('1')",
                     "import time\ntime.sleep(120)")
    out = tmp_path / "executed"
    proc = _run(slow, out / "01_slow.ipynb")
    deadline = time.time() + 120
    while not started.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert started.exists(), proc.communicate()
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group of the job, as a user's kill would
    proc.wait()
    left = sorted(p.name for p in out.iterdir())
    assert "01_slow.ipynb" not in left  # nothing where a reader would look for the executed notebook
    assert all(name.startswith(".01_slow.ipynb.tmp-") for name in left), left
    quick = _notebook(tmp_path / "01_slow_fixed.ipynb", "x = 6 * 7\nprint(x)")
    done = _run(quick, out / "01_slow.ipynb")
    assert done.wait(timeout=300) == 0, done.communicate()
    assert sorted(p.name for p in out.iterdir()) == ["01_slow.ipynb"]  # the killed run's temporary is gone
    nb = nbformat.read(out / "01_slow.ipynb", as_version=4)
    assert nb.cells[0].outputs[0]["text"] == "42\n" and "papermill" not in nb.metadata


def test_a_failing_notebook_is_kept_aside(tmp_path):
    bad = _notebook(tmp_path / "02_bad.ipynb", "raise ValueError('broken on purpose')")
    out = tmp_path / "executed"
    proc = _run(bad, out / "02_bad.ipynb")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "02_bad.ipynb failed" in err
    assert sorted(p.name for p in out.iterdir()) == [".02_bad.failed.ipynb"]
    assert "broken on purpose" in (out / ".02_bad.failed.ipynb").read_text()
