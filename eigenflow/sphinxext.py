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
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

from .core.config import describe_config
from .registry.registry import get_registries

__all__ = ["check_stubs", "main", "plugin_rst", "plugins_of", "setup", "stub_files"]

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


class _RegistryDirective(SphinxDirective):
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
        text: list[str] = []
        for name in plugins_of(kind, self.options.get("distribution")):
            text += plugin_rst(kind, name)
        if not text:
            text = ["(none registered)", ""]
        return self._parse(text, f"<eigenflow-plugins {kind}>")


class PluginPage(_RegistryDirective):
    """``.. eigenflow-plugin:: KIND NAME``: the body of one plugin's page."""

    required_arguments = 2

    def run(self) -> list[nodes.Node]:
        kind, name = self.arguments
        return self._parse(plugin_rst(kind, name, title=None), f"<eigenflow-plugin {kind} {name}>")


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
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
