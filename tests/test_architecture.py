"""The import rules of docs/architecture.rst, checked by parsing the source with ``ast``.

Layers, lowest first: ``core`` <- ``registry`` <- runtime <- ``plugins`` <- applications
(``api``, ``cli``, ``bench``, ``testing``, ``sphinxext``, the package ``__init__``). A module
may import its own layer and the layers below, with two refinements:

- a plugin family (``eigenflow/plugins/<family>/`` or ``eigenflow/plugins/<module>.py``)
  imports core, registry, runtime and its own family, never another family;
- nothing outside a package imports its private (``_``-prefixed) modules or names: checked
  for every import made by a plugin family, for every import of a plugin family's private
  name, and for ``benchmarks/*.py``;
- ``core`` holds interfaces and what two or more families share: a core module whose only
  users are one plugin family belongs next to that family.

The layer and private-name rules count every import: at module level, inside a function (a
lazy import is still a dependency) or under ``if TYPE_CHECKING:``. Cycles count every import
that runs, at module level or inside a function, and leave out only ``if TYPE_CHECKING:``
imports (annotations, never executed). Counting only module-level imports would accept the two
cycles issue 16 found (``core.component`` <-> ``core.solver`` and ``bench`` <->
``bench_gradients`` each had one side imported inside a function): a lazy import hides a cycle,
it does not remove the coupling. Importing a submodule also runs its parent packages'
``__init__``; that implicit edge is not counted (else every package whose ``__init__``
re-exports its submodules would be a cycle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "eigenflow"

#: The runtime layer: ``eigenflow/runtime/`` (being created in branch rt16) and, until that
#: lands, the training engine and pipeline composition.
RUNTIME = ("runtime", "engine", "pipeline")


class Import(NamedTuple):
    """One imported module (and, for ``from`` imports, one imported name)."""

    module: str  # the importing module
    file: str  # its path relative to the repository
    line: int
    target: str  # the imported module, resolved to a module of the tree when it is one
    name: str | None  # the name imported from ``target`` (``from X import name``), if any
    runs: bool  # executed at some point (False: only under ``if TYPE_CHECKING:``)
    module_owner: str  # the packages the two modules belong to (see :func:`owner`)
    target_owner: str

    def where(self) -> str:
        what = self.target + (f" ({self.name})" if self.name else "")
        return f"{self.file}:{self.line}: imports {what}"


def module_names(root: Path, package: str) -> dict[str, Path]:
    """``{dotted module name: file}`` of every ``.py`` file of ``package`` under ``root``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.Module) -> Iterable[tuple[ast.stmt, bool]]:
    """Every import statement with whether it ever runs (not only under ``TYPE_CHECKING``)."""

    def walk(nodes: list[ast.AST], runs: bool) -> Iterable[tuple[ast.stmt, bool]]:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield node, runs
            elif isinstance(node, ast.If) and _is_type_checking(node):
                yield from walk(node.body, False)
                yield from walk(node.orelse, runs)
            else:
                yield from walk(list(ast.iter_child_nodes(node)), runs)

    yield from walk(list(tree.body), True)


def _imported(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]
) -> Iterable[tuple[str, str | None]]:
    """``(target module, imported name or None)`` of each name of one import statement."""
    if isinstance(node, ast.Import):
        yield from ((alias.name, None) for alias in node.names)
        return
    source = node.module or ""
    if node.level:  # relative: from the importing module's package, up level - 1 packages
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        yield (submodule, None) if submodule in known else (source, alias.name)


def collect_imports(root: Path, package: str, files: dict[str, Path]) -> list[Import]:
    """The imports of ``package`` modules made by each of ``files`` (``{module: path}``)."""
    tree_files = module_names(root, package)
    known = set(tree_files)
    packages = {name for name, path in tree_files.items() if path.name == "__init__.py"}
    found = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.relative_to(root).as_posix()
        for node, runs in _import_nodes(tree):
            for target, name in _imported(node, module, path.name == "__init__.py", known):
                if target.split(".")[0] != package:
                    continue
                found.append(
                    Import(
                        module,
                        rel,
                        node.lineno,
                        target,
                        name,
                        runs,
                        owner(module, packages),
                        owner(target, packages),
                    )
                )
    return found


def owner(module: str, packages: set[str]) -> str:
    """The package a module belongs to for the privacy rule: its plugin family, else the
    subpackage of the top-level package it is in (``eigenflow.core``, ``eigenflow.bench``),
    else the top-level package (``eigenflow.cli``, ``eigenflow.engine``)."""
    parts = module.split(".")
    if parts[1:2] == ["plugins"] and len(parts) > 2:
        return ".".join(parts[:3])
    if ".".join(parts[:2]) in packages:
        return ".".join(parts[:2])
    return parts[0]


def layer(module: str) -> int:
    """0 core, 1 registry, 2 runtime (:data:`RUNTIME`), 3 plugins, 4 applications: everything
    else (``api``, ``cli``, ``bench``, ``testing``, ``sphinxext``, the package itself)."""
    parts = module.split(".")
    first = parts[1] if len(parts) > 1 else ""
    if first == "core":
        return 0
    if first == "registry":
        return 1
    if first in RUNTIME:
        return 2
    if first == "plugins":
        return 3
    return 4


LAYER_NAMES = ("core", "registry", "runtime", "plugins", "applications")


def _private(imp: Import) -> bool:
    """Whether ``imp`` reaches a ``_``-prefixed module or name inside its target's owner."""
    inside = imp.target[len(imp.target_owner) :].split(".")
    names = [p for p in inside if p] + ([imp.name] if imp.name else [])
    return any(n.startswith("_") and not n.startswith("__") for n in names)


def layer_violations(imports: Iterable[Import]) -> list[str]:
    """Imports against the layer rule, and plugin families importing one another."""
    problems = []
    for imp in imports:
        src, dst = layer(imp.module), layer(imp.target)
        if dst > src:
            problems.append(f"{imp.where()}: {LAYER_NAMES[src]} must not import {LAYER_NAMES[dst]}")
        elif src == dst == 3 and imp.module_owner != imp.target_owner:
            problems.append(f"{imp.where()}: a plugin family imports another family")
    return problems


def private_violations(imports: Iterable[Import]) -> list[str]:
    """Private names imported across packages by plugins, or from a plugin family."""
    problems = []
    for imp in imports:
        if imp.module_owner == imp.target_owner or not _private(imp):
            continue
        if layer(imp.module) == 3 or layer(imp.target) == 3:
            problems.append(f"{imp.where()}: a private name of {imp.target_owner}")
    return problems


def cycles(imports: Iterable[Import]) -> list[list[Import]]:
    """Import cycles among the imports that run: one list of edges per cycle (Tarjan's
    strongly connected components, then one shortest cycle through each)."""
    graph: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if imp.runs and imp.target != imp.module:
            graph.setdefault(imp.module, {}).setdefault(imp.target, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def connect(node: str) -> None:  # recursive Tarjan; the import graph is shallow
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    found = []
    for component in components:
        start = min(component)
        # breadth-first search back to start inside the component
        paths = {start: []}
        frontier = [start]
        cycle = None
        while frontier and cycle is None:
            nxt_frontier = []
            for node in frontier:
                for nxt, edge in sorted(graph.get(node, {}).items()):
                    if nxt == start:
                        cycle = [*paths[node], edge]
                        break
                    if nxt in component and nxt not in paths:
                        paths[nxt] = [*paths[node], edge]
                        nxt_frontier.append(nxt)
                if cycle:
                    break
            frontier = nxt_frontier
        found.append(cycle)
    return found


def single_family_core_modules(imports: list[Import]) -> list[str]:
    """Modules of ``core`` whose only users (directly, or through other core modules) are one
    plugin family: math that belongs next to that family. Users outside ``plugins``
    (registry, runtime, applications) make a module shared; ``core/__init__``'s re-exports
    do not count."""
    importers: dict[str, set[str]] = {}
    owners = {}
    for imp in imports:
        importers.setdefault(imp.target, set()).add(imp.module)
        owners[imp.module] = imp.module_owner

    def users(module: str, seen: frozenset[str]) -> set[str]:
        found = set()
        for importer in importers.get(module, ()):
            if layer(importer) == 0 and importer != f"{PACKAGE}.core":
                if importer not in seen:
                    found |= users(importer, seen | {importer})
            elif layer(importer) != 0:
                found.add(owners[importer])
        return found

    lonely = []
    for module in sorted({imp.module for imp in imports} | set(importers)):
        if layer(module) != 0 or module == f"{PACKAGE}.core":
            continue
        found = users(module, frozenset({module}))
        if len(found) == 1 and layer(next(iter(found))) == 3:
            lonely.append(f"{module} is used by {found.pop()} only")
    return lonely


def _format_cycles(found: list[list[Import]]) -> list[str]:
    lines = []
    for cycle in found:
        lines.append(" -> ".join([cycle[0].module, *(edge.target for edge in cycle)]))
        lines.extend(f"    {edge.where()}" for edge in cycle)
    return lines


@pytest.fixture(scope="module")
def package_imports() -> list[Import]:
    return collect_imports(REPO, PACKAGE, module_names(REPO, PACKAGE))


def test_layers_and_plugin_families(package_imports):
    problems = layer_violations(package_imports)
    assert not problems, "import rule broken (docs/architecture.rst):\n" + "\n".join(problems)


def test_no_private_names_across_packages(package_imports):
    problems = private_violations(package_imports)
    assert not problems, "private names imported across packages:\n" + "\n".join(problems)


def test_no_import_cycles(package_imports):
    found = cycles(package_imports)
    assert not found, "import cycles:\n" + "\n".join(_format_cycles(found))


def test_core_holds_only_what_two_families_or_other_layers_use(package_imports):
    lonely = single_family_core_modules(package_imports)
    assert not lonely, "move these next to their one consumer:\n" + "\n".join(lonely)


def test_benchmarks_use_no_private_names_of_plugins():
    scripts = {f"benchmarks.{p.stem}": p for p in sorted((REPO / "benchmarks").glob("*.py"))}
    imports = collect_imports(REPO, PACKAGE, scripts)
    assert imports, "no eigenflow import found in benchmarks/: the scan is broken"
    problems = [
        f"{imp.where()}: a private name of {imp.target_owner}"
        for imp in imports
        if layer(imp.target) == 3 and _private(imp)
    ]
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------ the checker on a made-up tree


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_reports_each_kind_of_violation_with_file_and_line(tmp_path):
    _write(
        tmp_path,
        {
            "eigenflow/__init__.py": "",
            "eigenflow/core/__init__.py": "",
            "eigenflow/core/a.py": "from . import b\n",
            "eigenflow/core/b.py": "from .a import x\n\ndef f():\n    from ..plugins import one\n",
            "eigenflow/registry/__init__.py": "from ..engine import Trainer\n",
            "eigenflow/engine.py": "from .core.a import x\n",
            "eigenflow/plugins/__init__.py": "",
            "eigenflow/plugins/one/__init__.py": "from . import _impl\n",
            "eigenflow/plugins/one/_impl.py": "from ...core import a\n",
            "eigenflow/plugins/two.py": (
                "from ..engine import Trainer\n"
                "from .one import _impl\n"
                "from ..core.a import _hidden\n"
                "def g():\n    import eigenflow.cli\n"
                "from ..core.lonely import f\n"
            ),
            "eigenflow/core/helper.py": "",
            "eigenflow/core/lonely.py": "from .helper import h\n",
            "eigenflow/cli.py": "from .plugins.one._impl import thing\n",
            # a cycle through annotations only: not an import cycle
            "eigenflow/registry/hooks.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .specs import Spec\n"
            ),
            "eigenflow/registry/specs.py": "from .hooks import Hook\n",
        },
    )
    imports = collect_imports(tmp_path, PACKAGE, module_names(tmp_path, PACKAGE))
    assert sorted(layer_violations(imports)) == [
        "eigenflow/core/b.py:4: imports eigenflow.plugins.one: core must not import plugins",
        "eigenflow/plugins/two.py:2: imports eigenflow.plugins.one._impl: "
        "a plugin family imports another family",
        "eigenflow/plugins/two.py:5: imports eigenflow.cli: plugins must not import applications",
        "eigenflow/registry/__init__.py:1: imports eigenflow.engine (Trainer): "
        "registry must not import runtime",
    ]
    assert sorted(private_violations(imports)) == [
        "eigenflow/cli.py:1: imports eigenflow.plugins.one._impl (thing): "
        "a private name of eigenflow.plugins.one",
        "eigenflow/plugins/two.py:2: imports eigenflow.plugins.one._impl: "
        "a private name of eigenflow.plugins.one",
        "eigenflow/plugins/two.py:3: imports eigenflow.core.a (_hidden): "
        "a private name of eigenflow.core",
    ]
    # core.lonely serves plugins.two only, and core.helper serves it through core.lonely
    assert single_family_core_modules(imports) == [
        "eigenflow.core.helper is used by eigenflow.plugins.two only",
        "eigenflow.core.lonely is used by eigenflow.plugins.two only",
    ]
    # one cycle: core.a <-> core.b, in one strongly connected component with the lazy
    # core.b -> plugins.one -> plugins.one._impl -> core.a; the registry's is type-only
    (cycle,) = cycles(imports)
    assert [(e.file, e.line) for e in cycle] == [
        ("eigenflow/core/a.py", 1),
        ("eigenflow/core/b.py", 1),
    ]
