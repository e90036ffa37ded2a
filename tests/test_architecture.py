"""The house's structure, measured from the code's own imports (docs/architecture.md): no import cycle between
modules, counting imports inside functions, and every import inside a function marked as deliberately lazy.
The layers themselves are import-linter's contract in pyproject.toml, which .ci/run checks before the tests."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CREG = ROOT / "creg"
#: imports inside functions, each marked ``# lazy: why`` (torch, transformers, matplotlib, an optional package,
#: an import guarded by ``except ImportError``): the count may fall, not rise.
LAZY_IMPORTS_AT_MOST = 86
LAZY = re.compile(r"#\s*lazy:\s*\S")


def _modules() -> dict[str, Path]:
    out = {}
    for path in CREG.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, *, typing: bool = True):
    """(node, inside a function) for every import (with ``typing=False``, those under ``if TYPE_CHECKING:`` left out)."""
    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if not typing and isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
    yield from walk(tree, False)


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for node, _ in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path}:{node.lineno}: relative import"
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names] + [node.module])
            for name in names:
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name and name != m and not m.startswith(name + "."):  # a package's face is not a cycle
                    graph[m].add(name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_creg_modules():
    """Module- and function-level imports alike (a function-level import is still an arrow), and those made
    for type annotations only (``if TYPE_CHECKING:``): a type is a dependency too."""
    assert _cycles(_graph()) == []


def test_every_import_inside_a_function_is_marked_lazy():
    lazy, unmarked = 0, []
    for path in sorted(CREG.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node, in_function in _imports(ast.parse("\n".join(lines)), typing=False):
            if not in_function:
                continue
            lazy += 1
            if not any(LAZY.search(line) for line in lines[node.lineno - 1:node.end_lineno]):
                unmarked.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not unmarked, ("imports inside functions without '# lazy: why' (hoist them to the module's top, or mark "
                          f"why they must wait): {unmarked}")
    assert lazy <= LAZY_IMPORTS_AT_MOST, f"{lazy} lazy imports (at most {LAZY_IMPORTS_AT_MOST}): hoist the new ones"
