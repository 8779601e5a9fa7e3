"""The shape of the library: no import cycle, no import hidden inside a function, every module importable alone."""
import ast
import subprocess
import sys
from pathlib import Path

import hoilib

ROOT = Path(hoilib.__file__).resolve().parent
# Modules a function may import: optional dependencies that most users never need. FlexAttention only exists in
# recent torch builds and only the GPU benchmark compares against it; everything else is imported at the top.
LAZY_OK = ("torch.nn.attention.flex_attention",)


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _modules() -> dict:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path, known: set) -> list:
    """(imported hoilib module, line, inside a function?) of every import statement of a module."""
    tree = ast.parse(path.read_text())
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, path.name == "__init__.py")
            # `from pkg import name`: name is a module when pkg.name is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out.extend((t, node.lineno, id(node) in in_function) for t in targets)
    return out


def _graph() -> dict:
    mods = _modules()
    known = set(mods)
    graph = {}
    for m, p in mods.items():
        deps = set()
        for target, _, _ in _imports(m, p, known):
            # importing a.b.c runs a/__init__ and a/b/__init__ too
            parts = target.split(".")
            deps.update(".".join(parts[:k]) for k in range(1, len(parts) + 1) if ".".join(parts[:k]) in known)
        deps.discard(m)
        graph[m] = deps
    return graph


def _cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_there_is_no_import_cycle():
    graph = _graph()
    # A package's __init__ re-exports its modules: the arrow from a module back up to its own package is how
    # Python imports it, not a dependency of its own. Only arrows between modules count.
    inner = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    assert _cycles(inner) == []


def test_the_cycle_check_can_fail():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_inside_a_function():
    mods = _modules()
    known = set(mods)
    hidden = [f"{p.relative_to(ROOT.parent)}:{line} imports {t}" for m, p in mods.items()
              for t, line, inside in _imports(m, p, known) if inside and t not in LAZY_OK]
    assert hidden == []


def test_floors_point_down():
    """The layers of the house: a lower floor never imports a higher one (plotting is a leaf: arrays in, figures
    out; only the world's command line imports it)."""
    graph = _graph()
    floors = [("hoilib.config", "hoilib.cache", "hoilib.kernels", "hoilib.stats", "hoilib.results",
               "hoilib.plotting"),
              ("hoilib.data",), ("hoilib.models", "hoilib.eval"), ("hoilib.engine",), ("hoilib.runs",),
              ("hoilib.analysis", "hoilib.study", "hoilib.bench", "hoilib.detect")]

    def floor(m):
        for k, names in enumerate(floors):
            if any(m == n or m.startswith(n + ".") for n in names):
                return k
        return None

    wrong = []
    for m, deps in graph.items():
        if m == "hoilib.data.world.__main__":
            continue
        for d in deps:
            if floor(m) is not None and floor(d) is not None and floor(d) > floor(m):
                wrong.append(f"{m} -> {d}")
    assert wrong == []
    leaf = [d for m, deps in graph.items() if m in ("hoilib.plotting", "hoilib.stats")
            for d in deps if d != "hoilib"]
    assert leaf == []
    users = sorted(m for m, deps in graph.items() if "hoilib.plotting" in deps and not m.startswith("hoilib.lab"))
    assert users == ["hoilib.data.world.__main__"]


# Imported once in the parent process so that each child starts with them loaded (the child inherits them by fork):
# what is checked is that each hoilib module imports on its own, not how long torch takes to load.
_PRELOAD = "import numpy, pandas, scipy, torch, torchvision, open_clip, matplotlib.pyplot, seaborn, PIL, tqdm.auto"
_CHILD = r"""
import os, sys, importlib, traceback
{preload}
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed.append(name)
print("FAILED", failed)
"""


def test_every_module_imports_alone():
    names = [m for m in _modules() if not m.endswith("__main__")]
    assert len(names) > 40
    out = subprocess.run([sys.executable, "-c", _CHILD.format(preload=_PRELOAD), *names], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "FAILED []" in out.stdout, out.stdout[-1000:] + out.stderr[-3000:]
