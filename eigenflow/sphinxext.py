"""Sphinx extension: documentation pages generated from the eigenflow registry.

Add ``"eigenflow.sphinxext"`` to ``extensions`` in ``conf.py``; then

``.. eigenflow-plugins:: KIND``
    one section per registered plugin of ``KIND`` (option ``:distribution: NAME`` keeps the
    plugins of one distribution);
``.. eigenflow-plugin:: KIND NAME``
    the body of one plugin's page: kind, class, distribution, source, docstring and a table of
    its options (name, type, default, help), all read from the registry at build time, so the
    docs cannot drift from the code.

One page per plugin: ``python -m eigenflow.sphinxext DOCS/plugins [--distribution NAME]``
writes a small stub per plugin (a title and the directive above) and an ``index.rst`` with a
table of contents, to commit with the docs; :func:`check_stubs` (or ``--check``) says which
stubs are missing or stale, for a test. Plugin authors document their own plugins the same
way with ``--distribution`` set to their distribution.

References resolve without an autodoc entry for every class: a reference to a plugin's class
(as each plugin page writes) links to that plugin's page, and a reference to a re-exported
name (``eigenflow.ConfigError``) links to the entry of the object it names
(``eigenflow.core.errors.ConfigError``), so ``sphinx -n`` (nitpicky) stays clean.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode

from .core.config import describe_config
from .registry.registry import get_registries

__all__ = [
    "check_stubs",
    "main",
    "plugin_rst",
    "plugins_of",
    "resolve_reference",
    "setup",
    "stub_files",
]

_KIND_TITLES = {
    "solver": "Solvers",
    "constraint": "Constraints",
    "traversal": "Traversals",
    "model": "Models",
    "layer": "Layers",
    "metric": "Metrics",
    "dataset": "Datasets",
    "pipeline": "Pipelines",
}


def _escape(text: str) -> str:
    """Help texts are plain text: escape the characters reStructuredText treats as markup."""
    for char in ("\\", "*", "`", "|", "_"):
        text = text.replace(char, "\\" + char)
    return text


def plugins_of(kind: str, distribution: str | None = None) -> list[str]:
    """Registered names of ``kind``, those of ``distribution`` only when given.

    Parameters
    ----------
    kind
        A component kind (``solver``, ``metric``, ...).
    distribution
        A distribution name (``eigenflow`` for the built-in plugins), or ``None`` for all.

    Returns
    -------
    list[str]
        Sorted names.
    """
    registry = get_registries()[kind]
    names = registry.names()
    if distribution is not None:
        names = [n for n in names if registry.entry(n).distribution == distribution]
    return names


def plugin_rst(kind: str, name: str, *, title: str | None = "^") -> list[str]:
    """reStructuredText lines describing one registered plugin.

    Parameters
    ----------
    kind, name
        The plugin.
    title
        The underline character of a section title with the plugin's name, or ``None`` for
        no title (the body of a page whose title is written elsewhere).

    Returns
    -------
    list[str]
        Lines of reST: kind, class, distribution, source, docstring and options table.
    """
    entry = get_registries()[kind].entry(name)
    cls = entry.cls
    lines: list[str] = []
    if title is not None:
        heading = f"``{name}``"
        lines += [heading, title * len(heading), ""]
    lines += [
        f"*{kind}* — :class:`{cls.__module__}.{cls.__qualname__}`"
        f" (distribution ``{entry.distribution}``, plugin ``{entry.plugin}``)",
        "",
    ]
    if cls.source:
        lines += [f"**Source:** {cls.source}", ""]
    doc = inspect.getdoc(cls) or ""
    lines += [*doc.splitlines(), ""]
    rows = describe_config(cls.Config)
    if rows:
        lines += [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 20 15 15 50",
            "",
            "   * - option",
            "     - type",
            "     - default",
            "     - meaning",
        ]
        for row in rows:
            lines += [
                f"   * - ``{row['name']}``",
                f"     - ``{row['type']}``",
                f"     - ``{row['default']!r}``",
                f"     - {_escape(row['help'] or '')}",
            ]
        lines.append("")
    else:
        lines += ["No options.", ""]
    return lines


def _plugin_pages(env: Any) -> dict[str, dict[str, tuple[str, bool]]]:
    """The build's record of where plugins are described: class path -> {docname: (anchor,
    whether it is the plugin's own page)}."""
    if not hasattr(env, "eigenflow_plugin_pages"):
        env.eigenflow_plugin_pages = {}
    return env.eigenflow_plugin_pages


def _class_path(kind: str, name: str) -> str:
    cls = get_registries()[kind].entry(name).cls
    return f"{cls.__module__}.{cls.__qualname__}"


class _RegistryDirective(SphinxDirective):
    def _record(self, kind: str, name: str, *, page: bool) -> list[nodes.Node]:
        """Note where plugin ``kind``/``name`` is described; a target node to link to."""
        anchor = f"eigenflow-{kind}-{name}"
        pages = _plugin_pages(self.env).setdefault(_class_path(kind, name), {})
        pages[self.env.docname] = (anchor, page)
        return [nodes.target("", "", ids=[anchor])]

    def _parse(self, text: list[str], source: str) -> list[nodes.Node]:
        container = nodes.section()
        container.document = self.state.document
        self.state.nested_parse(
            StringList(text, source=source), self.content_offset, container, match_titles=True
        )
        return container.children


class PluginCatalogue(_RegistryDirective):
    """``.. eigenflow-plugins:: KIND`` (option ``:distribution:``): a section per plugin."""

    required_arguments = 1
    option_spec = {"distribution": directives.unchanged}  # noqa: RUF012 - docutils API

    def run(self) -> list[nodes.Node]:
        kind = self.arguments[0]
        result: list[nodes.Node] = []
        for name in plugins_of(kind, self.options.get("distribution")):
            result += self._record(kind, name, page=False)
            result += self._parse(plugin_rst(kind, name), f"<eigenflow-plugins {kind}>")
        if not result:
            result = self._parse(["(none registered)", ""], f"<eigenflow-plugins {kind}>")
        return result


class PluginPage(_RegistryDirective):
    """``.. eigenflow-plugin:: KIND NAME``: the body of one plugin's page."""

    required_arguments = 2

    def run(self) -> list[nodes.Node]:
        kind, name = self.arguments
        return self._record(kind, name, page=True) + self._parse(
            plugin_rst(kind, name, title=None), f"<eigenflow-plugin {kind} {name}>"
        )


def _purge_plugin_pages(app: Any, env: Any, docname: str) -> None:
    for pages in _plugin_pages(env).values():
        pages.pop(docname, None)


def _merge_plugin_pages(app: Any, env: Any, docnames: set[str], other: Any) -> None:
    mine = _plugin_pages(env)
    for path, pages in _plugin_pages(other).items():
        mine.setdefault(path, {}).update(
            {doc: where for doc, where in pages.items() if doc in docnames}
        )


def _import_target(target: str) -> object | None:
    """The object a dotted ``target`` names, if its top-level package is already imported
    (nothing new is imported while resolving references)."""
    parts = target.split(".")
    if len(parts) < 2 or parts[0] not in sys.modules:
        return None
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def resolve_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """``missing-reference`` handler: a plugin's class links to its plugin page; a name
    re-exported elsewhere (``eigenflow.ConfigError``) links to the documented object."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    pages = _plugin_pages(env).get(target)
    if pages:
        docname, (anchor, _) = max(pages.items(), key=lambda item: item[1][1])
        return make_refnode(app.builder, node["refdoc"], docname, anchor, contnode, target)
    obj = _import_target(target)
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    canonical = f"{module}.{qualname}"
    if canonical == target:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode
    )


def stub_files(distribution: str | None = None) -> dict[str, str]:
    """The stub pages for every registered plugin (of ``distribution`` when given).

    Returns
    -------
    dict[str, str]
        Relative path -> content: ``index.rst`` and ``KIND/NAME.rst`` for each plugin.
    """
    files: dict[str, str] = {}
    index = [
        "Plugin pages",
        "============",
        "",
        "One page per registered plugin, generated from the registry at build time.",
        "",
    ]
    for kind in get_registries().kinds:
        names = plugins_of(kind, distribution)
        if not names:
            continue
        section = _KIND_TITLES.get(kind, kind)
        index += [section, "-" * len(section), "", ".. toctree::", "   :maxdepth: 1", ""]
        for name in names:
            index.append(f"   {kind}/{name}")
            heading = f"``{name}`` ({kind})"
            files[f"{kind}/{name}.rst"] = "\n".join(
                [heading, "=" * len(heading), "", f".. eigenflow-plugin:: {kind} {name}", ""]
            )
        index.append("")
    files["index.rst"] = "\n".join(index)
    return files


def check_stubs(folder: str | Path, distribution: str | None = None) -> list[str]:
    """Problems with the stub pages in ``folder``: missing, stale or extra files.

    Returns
    -------
    list[str]
        One line per problem; empty when the folder matches :func:`stub_files`.
    """
    folder = Path(folder)
    expected = stub_files(distribution)
    problems = []
    for rel, content in expected.items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.read_text(encoding="utf-8") != content:
            problems.append(f"{rel}: out of date")
    for path in sorted(folder.rglob("*.rst")) if folder.is_dir() else []:
        rel = path.relative_to(folder).as_posix()
        if rel not in expected:
            problems.append(f"{rel}: no such plugin registered")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eigenflow.sphinxext FOLDER [--distribution NAME] [--check]``."""
    parser = argparse.ArgumentParser(
        prog="python -m eigenflow.sphinxext",
        description="Write (or check) one documentation stub page per registered plugin.",
    )
    parser.add_argument("folder", help="folder of the stubs, e.g. docs/plugins")
    parser.add_argument("--distribution", help="only the plugins of this distribution")
    parser.add_argument("--check", action="store_true", help="report differences, write nothing")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if args.check:
        problems = check_stubs(folder, args.distribution)
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    expected = stub_files(args.distribution)
    for rel, content in expected.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
    for path in sorted(folder.rglob("*.rst")):
        if path.relative_to(folder).as_posix() not in expected:
            path.unlink()
    print(f"{len(expected) - 1} plugin pages in {folder}")
    return 0


def setup(app: Any) -> dict[str, Any]:
    """Register the directives with Sphinx."""
    app.add_directive("eigenflow-plugins", PluginCatalogue)
    app.add_directive("eigenflow-plugin", PluginPage)
    app.connect("env-purge-doc", _purge_plugin_pages)
    app.connect("env-merge-info", _merge_plugin_pages)
    app.connect("missing-reference", resolve_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
