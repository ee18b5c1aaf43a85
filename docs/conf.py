"""Sphinx configuration for eigenflow (built with warnings as errors)."""

from __future__ import annotations

import eigenflow

project = "eigenflow"
author = "eigenflow developers"
copyright = "2026, eigenflow developers"
release = eigenflow.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
    # the plugin catalogue and one page per plugin, generated from the registry (plugin
    # authors can use the same extension for their own plugins)
    "eigenflow.sphinxext",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
# Every reference must resolve (the docs are built with -n -W).
nitpicky = True

# Links to Python, NumPy and PyTorch from local inventories (docs/_inventories, written by
# docs/make_inventories.py): the build never fetches anything.
# Third-party names with no inventory here: pluggy's type variable in the signature of
# hookimpl (a pluggy.HookimplMarker) and the attrs package, named in the prose.
nitpick_ignore = [
    ("py:class", "_F"),
    ("py:mod", "attrs"),
    # pathlib.Path and torch.nn.Module as written in annotations of members that
    # eigenflow.runtime re-exports: autodoc shows those annotations unevaluated there
    ("py:class", "Path"),
    ("py:class", "nn.Module"),
]

intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", "_inventories/python.inv"),
    "numpy": ("https://numpy.org/doc/stable/", "_inventories/numpy.inv"),
    "torch": ("https://pytorch.org/docs/stable/", "_inventories/torch.inv"),
}
templates_path: list[str] = []
exclude_patterns = ["_build"]
html_theme = "furo"
html_static_path = ["_static"]
html_title = f"eigenflow {release}"


def _public_bases(app, name, obj, options, bases):
    """Show a private base class (``_MatFnSolver``) as its nearest public ancestor: private
    classes have no API entry to link to."""
    for i, base in enumerate(bases):
        if isinstance(base, type) and base.__name__.startswith("_"):
            bases[i] = next(c for c in base.__mro__ if not c.__name__.startswith("_"))


def setup(app):
    app.connect("autodoc-process-bases", _public_bases)
