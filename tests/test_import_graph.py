"""The import structure: no cycles between the stages, library code never imports the CLI.

A static walk of every ``import`` (module level and inside functions) of ``tvm_quantmcu``,
``relax_passes`` and ``micro_project``. Nodes are packages: each subpackage is one node
(``tvm_quantmcu.search``, ``micro_project.templates``) and each module directly in a top-level
package is one node (``tvm_quantmcu.graph``, ``relax_passes.patch_split``): the top-level
packages are namespaces of stages, not stages themselves.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("tvm_quantmcu", "relax_passes", "micro_project")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(parts: list[str]) -> bool:
    p = REPO.joinpath(*parts)
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _resolve(name: str) -> str | None:
    """The longest prefix of a dotted name that is a module or package of ours."""
    parts = name.split(".")
    while parts and not _exists(parts):
        parts.pop()
    return ".".join(parts) if parts else None


def node_of(module: str) -> str:
    """A subpackage, or a module directly in a top-level package, or that package."""
    return ".".join(module.split(".")[:2])


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(imported module of ours, line) for every import statement in the file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            # `from pkg import mod` imports the module; `from pkg import name` the package
            names = [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                target = _resolve(name)
                if target:
                    found.append((target, node.lineno))
    return found


def import_edges() -> dict[str, dict[str, list[str]]]:
    """node → imported node → ["module:line", ...] (edges inside one node left out)."""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            src = node_of(_module_name(path))
            for target, line in imports_of(path):
                dst = node_of(target)
                if dst != src:
                    edges[src][dst].append(f"{_module_name(path)}:{line}")
    return edges


def cycles(edges) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_walker_sees_function_level_imports():
    found = imports_of(REPO / "tvm_quantmcu" / "__init__.py")   # imported inside __getattr__
    assert "tvm_quantmcu.relax_build" in {t for t, _ in found}


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b": []}, "b": {"c": []}}) == []


def test_no_import_cycles_between_packages():
    edges = import_edges()
    assert "tvm_quantmcu.search" in edges and "tvm_quantmcu.quant" in edges["tvm_quantmcu.search"]
    report = []
    for comp in cycles(edges):
        report.append(" ⇄ ".join(comp))
        for a in comp:
            for b in comp:
                if b in edges.get(a, {}):
                    report.append(f"    {a} → {b}: {', '.join(edges[a][b][:4])}")
    assert not report, "import cycles:\n" + "\n".join(report)


def test_library_code_never_imports_the_cli():
    offenders = [f"{src} ({', '.join(where[:4])})" for src, dsts in import_edges().items()
                 for dst, where in dsts.items()
                 if dst == "tvm_quantmcu.cli" and src != "tvm_quantmcu.cli"]
    assert not offenders, "library code imports the CLI: " + "; ".join(offenders)


def test_codegen_reads_the_module_not_the_graph_or_policy():
    """The C generator's input is the lowered IRModule: nothing under codegen/ imports the
    search, the layer graph or a Policy (nor the quant package, which exports Policy)."""
    forbidden = ("tvm_quantmcu.search", "tvm_quantmcu.graph", "tvm_quantmcu.quant.policy")
    found = []
    for path in sorted((REPO / "tvm_quantmcu" / "codegen").rglob("*.py")):
        for target, line in imports_of(path):
            if target == "tvm_quantmcu.quant" or any(
                    target == f or target.startswith(f + ".") for f in forbidden):
                found.append(f"{_module_name(path)}:{line} imports {target}")
    assert not found, "\n".join(found)
