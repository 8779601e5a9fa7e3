"""The world's command line (hoilib.data.world.__main__), the figures its preview is made of, and the package's
import layers (only the command line may import plotting)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import hoilib.data.world as world_pkg
from hoilib.data.world import world_vocabulary
from hoilib.data.world.__main__ import _main

# The package's modules, lowest layer first: each may import only modules before it (stats, simdet and protocols
# stand apart, below the store).
LAYERS = ["vocabulary", "raster", "objects", "people", "interactions", "backgrounds", "scene", "generate", "stats",
          "simdet", "protocols", "store", "__init__", "__main__"]


@pytest.mark.parametrize("version", [1, 2])
def test_cli_bench_prints_speed(capsys, version):
    _main(["--bench", "--n", "5", "--size", "32", "--version", str(version)])
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 5 and out["image_size"] == 32 and out["images_per_s_cpu"] > 0
    assert out["version"] == version


@pytest.mark.parametrize("version", [1, 2])
def test_cli_preview_writes_a_png(tmp_path, capsys, version):
    path = tmp_path / "grid.png"
    _main(["--preview", str(path), "--n", "6", "--version", str(version)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.strip() == f"wrote {path}"


def test_cli_without_an_action_prints_help(capsys):
    _main([])
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m hoilib.data.world") and "--preview" in out and "--bench" in out
    assert "--version" in out


def _imports(path: Path) -> tuple:
    """(package modules a module imports, absolute hoilib modules it imports), read from its source."""
    local, absolute = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:  # from .x import ... / from . import x
            local.update([node.module] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and node.level > 1:  # from ..x / ...x: outside the package
            absolute.add(f"{'.' * node.level}{node.module}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            absolute.add(node.module)
        elif isinstance(node, ast.Import):
            absolute.update(a.name for a in node.names)
    return local, absolute


def test_package_modules_import_only_lower_layers():
    root = Path(world_pkg.__file__).parent
    assert sorted(p.stem for p in root.glob("*.py")) == sorted(LAYERS)
    for k, name in enumerate(LAYERS):
        local, absolute = _imports(root / f"{name}.py")
        assert local <= set(LAYERS[:k]), (name, local - set(LAYERS[:k]))
        uses_plotting = any(m.split(".")[-1] == "plotting" for m in absolute)
        assert uses_plotting == (name == "__main__"), name


def test_plots(sample):
    from hoilib.plotting import plot_class_frequencies, show_hoi_grid
    _, images, meta, ann = sample
    v = world_vocabulary()
    fig = show_hoi_grid(images, ann, v, [0, 1, 2, 3, 4], ncols=3)
    assert len(fig.axes) == 5
    ax0 = fig.axes[0]
    n_pairs = len({(tuple(ann.boxes_h[r]), tuple(ann.boxes_o[r])) for r in ann.pairs_of(0)})
    assert len(ax0.lines) == n_pairs  # one link per human-object pair
    assert "\u2192" in ax0.get_xlabel() or n_pairs == 0
    counts = ann.class_counts()
    fig = plot_class_frequencies(counts, unseen=[0, 3, 5], names=[v.hoi_name(c) for c in range(v.num_classes)])
    ax = fig.axes[0]
    assert len(ax.patches) == v.num_classes and ax.get_yscale() == "log"
    assert sum(p.get_hatch() == "////" for p in ax.patches) == 3
    with pytest.raises(ValueError):
        plot_class_frequencies(counts, unseen=[v.num_classes])
    with pytest.raises(ValueError):
        show_hoi_grid(images, ann, v, [])
