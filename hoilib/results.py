"""Everything the study writes to `results/` goes through here, atomically (`hoilib.cache`): an interrupted
notebook never leaves a half-written table or figure.

- `write_table(df, name, results_dir)`: `tables/<name>.csv` and `tables/<name>.md`, both generated from the same
  frame (never edited by hand); floats are rounded (mAP to 2 decimals) so reruns diff cleanly.
- `save_figure(fig, name, results_dir)`: `figures/<name>.png` at a fixed size and dpi.
- `write_manifest(results_dir, ...)`: what produced the results: git commit, profile, seeds, configs, package
  versions and the hash of the data used, one JSON file per notebook (`manifest/<notebook>.json`).
"""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

from . import cache

FIG_DPI = 120
PACKAGES = ("torch", "torchvision", "open_clip_torch", "numpy", "pandas", "matplotlib", "papermill", "nbval")


def _dir(results_dir: str | Path, sub: str) -> Path:
    p = Path(results_dir) / sub
    p.mkdir(parents=True, exist_ok=True)
    return p


def write_table(df: pd.DataFrame, name: str, results_dir: str | Path = "results", decimals: int = 2,
                caption: str = "") -> Path:
    """Write `df` as `tables/<name>.csv` and `.md` (with an optional caption line above the table).

    Returns the CSV path."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].round(decimals)
    tables = _dir(results_dir, "tables")
    csv = tables / f"{name}.csv"
    cache.atomic_write_text(csv, out.to_csv(index=False))
    md = out.to_markdown(index=False, floatfmt=f".{decimals}f")
    cache.atomic_write_text(tables / f"{name}.md", (f"{caption}\n\n" if caption else "") + md + "\n")
    return csv


def save_figure(fig, name: str, results_dir: str | Path = "results") -> Path:
    """Save a matplotlib figure as `figures/<name>.png` (fixed dpi, tight bounding box, no timestamp metadata)."""
    path = _dir(results_dir, "figures") / f"{name}.png"
    with cache.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=FIG_DPI, bbox_inches="tight", metadata={"Software": None})
    return path


def git_commit(repo: str | Path = ".") -> str:
    """The commit hash of HEAD, with '+dirty' when tracked files differ from it ('unknown' outside git)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def hash_files(paths) -> str:
    """sha256 over the bytes of the given files (in the given order): the data hash in a manifest."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def write_manifest(results_dir: str | Path, notebook: str, profile: str, seeds, configs: dict,
                   data_hash: str, extra: dict | None = None) -> Path:
    """Record what produced a notebook's results: `manifest/<notebook>.json`.

    Args:
        configs: name -> resolved config dict (ExperimentConfig.to_dict()) for every configuration used.
        data_hash: hash of the data used (e.g. the world's digest plus file hash, or the HICO-DET json hash).
    """
    d = {"notebook": notebook, "profile": profile, "git_commit": git_commit(Path(results_dir).resolve().parent),
         "seeds": list(seeds), "data_hash": data_hash, "packages": package_versions(), "configs": configs}
    if extra:
        d.update(extra)
    path = _dir(results_dir, "manifest") / f"{notebook}.json"
    return cache.atomic_write_text(path, json.dumps(d, indent=2, sort_keys=True, default=str) + "\n")
