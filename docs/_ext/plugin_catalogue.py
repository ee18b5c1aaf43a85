"""Sphinx directive ``.. eigenflow-plugins:: KIND``: one section per registered plugin of
KIND, generated from its docstring, source and config (so the docs never drift)."""

from __future__ import annotations

import inspect

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

import eigenflow as ef
from eigenflow.core.config import describe_config


def _escape(text: str) -> str:
    """Help texts are plain text: escape the characters reStructuredText treats as markup."""
    for char in ("\\", "*", "`", "|", "_"):
        text = text.replace(char, "\\" + char)
    return text


def _plugin_rst(kind: str, name: str) -> list[str]:
    cls = ef.get(kind, name)
    entry = ef.registry.get_registries()[kind].entry(name)
    title = f"``{name}``"
    lines = [title, "^" * len(title), ""]
    lines += [
        f"*{kind}* — :class:`{cls.__module__}.{cls.__qualname__}`"
        f" (distribution ``{entry.distribution}``)",
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
    return lines


class PluginCatalogue(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        kind = self.arguments[0]
        text: list[str] = []
        for name in ef.list(kind):
            text += _plugin_rst(kind, name)
        if not text:
            text = ["(none registered)", ""]
        container = nodes.section()
        container.document = self.state.document
        self.state.nested_parse(
            StringList(text, source=f"<eigenflow-plugins {kind}>"),
            self.content_offset,
            container,
            match_titles=True,
        )
        return container.children


def setup(app):
    app.add_directive("eigenflow-plugins", PluginCatalogue)
    return {"parallel_read_safe": True, "version": "1"}
