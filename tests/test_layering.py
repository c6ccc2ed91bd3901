"""The house's layering rules, read from the source (nothing imported; about a second):
core modules never import a surface (client.py, api*.py, export.py, cli*.py, server/), and no
new import circles. Every import counts, lazy ones inside functions too; only those
under ``if TYPE_CHECKING:`` (annotations) do not. One test imports rekolab in a fresh
interpreter to check what that import loads."""
from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "rekolab"
SURFACES = ("rekolab.client", "rekolab.api", "rekolab.api_images", "rekolab.api_params", "rekolab.api_streaming",
            "rekolab.export", "rekolab.cli", "rekolab.cli_images", "rekolab.server")
# The circles and the core -> surface import known before the stream-processor split
# (named in the architecture page) are all removed; nothing is to be added here.
KNOWN_CORE_TO_SURFACE: set[tuple[str, str]] = set()
KNOWN_CIRCLES: list[set[str]] = []


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


@functools.cache
def _graph() -> dict[str, set[str]]:
    mods = _modules()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for mod, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for node in tree.body  # module-level `if TYPE_CHECKING:` blocks
                       if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None))
                       == "TYPE_CHECKING" for n in ast.walk(node)}
        package = mod if is_pkg else mod.rpartition(".")[0]
        deps: set[str | None] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                deps.update(owner(a.name) for a in node.names if a.name.startswith("rekolab"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                elif (node.module or "").startswith("rekolab"):
                    target = node.module
                else:
                    continue
                deps.update(f"{target}.{a.name}" if f"{target}.{a.name}" in mods else owner(target)
                            for a in node.names)
        graph[mod] = {d for d in deps if d and d != mod}
    return graph


def _is_surface(mod: str) -> bool:
    return any(mod == s or mod.startswith(s + ".") for s in SURFACES)


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan), leaving out the
    package root ``rekolab/__init__.py`` (it only re-exports)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w == "rekolab":
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in graph:
        if v != "rekolab" and v not in index:
            visit(v)
    return found


def test_core_modules_import_no_surface():
    graph = _graph()
    assert "rekolab.streaming.manager" in graph and "rekolab.streaming.session" in graph  # the walk sees packages
    bad = {(m, d) for m, deps in graph.items() for d in deps
           if m != "rekolab" and not _is_surface(m) and _is_surface(d)}
    assert bad <= KNOWN_CORE_TO_SURFACE, sorted(bad - KNOWN_CORE_TO_SURFACE)


def test_no_new_import_circles():
    circles = _circles(_graph())
    new = [sorted(c) for c in circles if c not in KNOWN_CIRCLES]
    assert not new, new
    assert not any(m.startswith("rekolab.streaming") for c in circles for m in c)


def test_import_loads_no_model_library_and_makes_openmp_wait_passively():
    """``import rekolab`` loads no torch, onnxruntime or decoder (they load when a job needs
    them), so the ``OMP_WAIT_POLICY=PASSIVE`` it sets is in place when torch's libgomp reads
    it; a policy the user set is kept."""
    code = ("import os, sys, rekolab; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'av', 'decord', 'insightface', 'cv2', 'open_clip')"
            " if m in sys.modules)); print(os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "PASSIVE"], out.stderr
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[1] == "ACTIVE"
