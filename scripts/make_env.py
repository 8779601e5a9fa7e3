#!/usr/bin/env python3
"""Create (or update) a local virtual environment from env.yml, using only the standard library.

Usage: python3 scripts/make_env.py [env.yml] [.venv]

conda channels are unreachable on the study's machines, so the environment is a plain venv built from the
`pip:` section of env.yml, which stays the single list of dependencies. A second run with an unchanged env.yml
does nothing (the hash of env.yml and pyproject.toml is stored in the venv).
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path


def main() -> int:
    env_file = Path(sys.argv[1] if len(sys.argv) > 1 else "env.yml").resolve()
    target = Path(sys.argv[2] if len(sys.argv) > 2 else env_file.parent / ".venv").resolve()
    if not env_file.is_file():
        print(f"make_env: no such file: {env_file}", file=sys.stderr)
        return 2
    root = env_file.parent
    stamp_src = env_file.read_bytes() + (root / "pyproject.toml").read_bytes() if (root / "pyproject.toml").exists() else env_file.read_bytes()
    digest = hashlib.sha256(stamp_src).hexdigest()
    stamp = target / ".hoilib-env-stamp"
    python = target / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        print(f"make_env: {target} is up to date")
        return 0
    if not python.exists():
        print(f"make_env: creating {target}")
        venv.EnvBuilder(with_pip=True).create(target)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(pip + ["install", "-q", "pyyaml"], check=True)
    # Parse env.yml with the venv's own Python (the system one may lack PyYAML).
    code = (
        "import sys, yaml, json; d = yaml.safe_load(open(sys.argv[1])); print(json.dumps(d.get('dependencies', [])))"
    )
    out = subprocess.run([str(python), "-c", code, str(env_file)], check=True, capture_output=True, text=True).stdout
    import json

    deps = json.loads(out)
    pip_entries, conda_only = [], []
    for dep in deps:
        if isinstance(dep, dict) and "pip" in dep:
            pip_entries.extend(dep["pip"])
        elif isinstance(dep, str) and dep.startswith("python="):
            want = dep.split("=", 1)[1]
            have = f"{sys.version_info.major}.{sys.version_info.minor}"
            if not have.startswith(want):
                print(f"make_env: env.yml asks for python={want}, this interpreter is {have}", file=sys.stderr)
                return 2
        elif dep == "pip":
            continue
        else:
            conda_only.append(dep)
    if conda_only:
        print(f"make_env: conda-only entries {conda_only} cannot be installed without conda; move them under pip:",
              file=sys.stderr)
        return 2
    # The requirements file lives next to env.yml so that `-e .` resolves from there, as it does under conda.
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=root, delete=False) as f:
        f.write("\n".join(pip_entries) + "\n")
        req = f.name
    try:
        print(f"make_env: installing {len(pip_entries)} requirements into {target} (first time: a few minutes)")
        subprocess.run(pip + ["install", "-q", "-r", req], check=True, cwd=root)
    finally:
        os.unlink(req)
    stamp.write_text(digest + "\n")
    print(f"make_env: {target} ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
