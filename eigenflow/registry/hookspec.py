"""Hook specifications: what a plugin module may implement.

A plugin is a module (or any object) named by an entry point in the group ``eigenflow``::

    [project.entry-points.eigenflow]
    my-solvers = "my_package.eigenflow_plugin"

and implements the hooks below, marked with :data:`hookimpl`::

    from eigenflow.registry import hookimpl

    @hookimpl
    def eigenflow_register(registry):
        registry.add("solver", MySolver)

eigenflow's own plugins are declared and loaded exactly the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from .registry import Registries

PROJECT_NAME = "eigenflow"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marker for hook implementations in plugin modules.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def eigenflow_register(registry: Registries) -> None:
    """Register components with ``registry.add(kind, cls)``.

    Called once per plugin, the first time any registry is used. ``kind`` is one of
    ``solver``, ``constraint``, ``traversal``, ``model``, ``layer``, ``metric``, ``dataset``,
    ``pipeline``; ``cls`` derives from that kind's base class in :mod:`eigenflow.core` and
    carries a class attribute ``name`` (lowercase, hyphenated) unless ``name=`` is given.

    Parameters
    ----------
    registry
        The :class:`~eigenflow.registry.Registries` being filled.
    """
