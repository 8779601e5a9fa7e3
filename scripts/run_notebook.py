#!/usr/bin/env python3
"""Execute one notebook with papermill and put the executed copy in place only when it is complete.

    run_notebook.py SOURCE TARGET [papermill options, e.g. -p PROFILE default]

papermill writes to a hidden temporary beside TARGET (a half-run notebook full of "running" / "pending" cells never
stands where a reader expects a result); the volatile metadata is stripped (scripts/strip_metadata.py) and the file
renamed to TARGET. On a failing cell the executed copy is kept as `.NAME.failed.ipynb` beside TARGET for inspection
and the exit status is papermill's. Temporaries left by a killed run are removed by the next one.
"""
import os
import subprocess
import sys
from pathlib import Path

from strip_metadata import strip

from hoilib import cache


def main(argv: list) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    source, target, options = Path(argv[0]), Path(argv[1]), argv[2:]
    target.parent.mkdir(parents=True, exist_ok=True)
    cache.sweep_stale(target.parent)
    failed = target.with_name(f".{target.stem}.failed.ipynb")
    tmp = cache.temp_path(target, suffix=".ipynb")
    try:
        cmd = [sys.executable, "-m", "papermill", str(source), str(tmp), *options, "-k", "python3", "--cwd",
               str(source.parent), "--no-progress-bar", "--log-level", "WARNING"]
        rc = subprocess.run(cmd).returncode
        if rc != 0:
            if tmp.exists():
                os.replace(tmp, failed)
            print(f"run_notebook: {source.name} failed; the executed notebook with the failing cell is {failed}",
                  file=sys.stderr)
            return rc
        strip(str(tmp))
        os.replace(tmp, target)
        failed.unlink(missing_ok=True)
        return 0
    finally:
        if tmp.exists():
            tmp.unlink()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
