"""allama's modules import each other without a cycle: not at module level, and not through
an import inside a function either (a late import only hides a cycle until something calls
it). The graph is read from the source with `ast`; names are resolved with importlib."""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import allama

PACKAGE_DIR = Path(allama.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}


def _type_checking_only(node: ast.stmt) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_statements(body: list[ast.stmt], in_function: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
    """(import statement, whether it runs inside a function), leaving out `if TYPE_CHECKING:` blocks."""
    for node in body:
        if _type_checking_only(node):
            yield from import_statements(node.orelse, in_function)  # type: ignore[attr-defined]
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
        inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                yield from import_statements(block, inside)
        for handler in getattr(node, "handlers", []):
            yield from import_statements(handler.body, inside)
        for case in getattr(node, "cases", []):
            yield from import_statements(case.body, inside)


def _is_module(name: str) -> bool:
    if name in MODULES:
        return True
    try:
        return importlib.util.find_spec(name) is not None  # the compiled extension, say
    except ModuleNotFoundError:
        return False


def imported_modules(module: str, node: ast.stmt) -> list[str]:
    """The modules an import statement of `module` loads: `from a import b` loads a.b when b is
    a module, else a itself."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
    assert base is not None
    return [f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base for alias in node.names]


def import_graph(with_functions: bool) -> dict[str, set[str]]:
    """allama module -> the allama modules it imports."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        edges = graph.setdefault(module, set())
        for node, in_function in import_statements(ast.parse(path.read_text(encoding="utf-8")).body):
            if in_function and not with_functions:
                continue
            edges.update(name for name in imported_modules(module, node)
                         if (name == "allama" or name.startswith("allama.")) and name != module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_graph_sees_the_imports_of_a_known_module():
    graph = import_graph(with_functions=False)
    assert {"allama.llama", "allama.engine", "allama._native"} <= graph["allama"] | graph["allama.llama"]
    assert "allama.chat.formats" in graph["allama.chat.registry"]


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_module_level_imports_have_no_cycle():
    assert cycles(import_graph(with_functions=False)) == []


def test_imports_inside_functions_close_no_cycle_either():
    assert cycles(import_graph(with_functions=True)) == []
