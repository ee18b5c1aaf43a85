"""Write the intersphinx inventories the docs build reads instead of fetching them.

The build must work without network (a build machine, a user's CI), so ``conf.py`` points
intersphinx at small inventories in ``docs/_inventories/`` rather than at the projects'
``objects.inv`` on the web. They hold only the Python, NumPy and PyTorch objects eigenflow's
docs refer to, each with the URI of its page in the official documentation. Regenerate them
after adding a reference to a new third-party object (``python -m sphinx -n -W`` names any
that does not resolve)::

    python docs/make_inventories.py            # rewrite docs/_inventories/*.inv
    python docs/make_inventories.py --check    # exit 1 if the files are out of date

The format is Sphinx's inventory version 2: four header lines, then zlib-compressed lines
``name domain:role priority uri dispname`` (``uri`` relative to the project's base URL,
``dispname`` ``-`` when it equals ``name``).
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "_inventories"

# Project -> (base URL, version, {object name: (domain:role, uri relative to the base)}).
# URIs follow each site's scheme: docs.python.org puts a module's objects on
# library/<module>.html, numpy.org one page per object under reference/generated/, and
# pytorch.org one page per object under generated/, except for the objects documented on
# topic pages (tensors.html, tensor_attributes.html, data.html).
_PYTHON_MODULE_PAGES = {
    "argparse": ("ArgumentParser", "Namespace"),
    "collections.abc": ("Callable", "Iterable", "Iterator", "Mapping", "Sequence"),
    "fractions": ("Fraction",),
    "os": ("PathLike",),
    "pathlib": ("Path",),
}

_TORCH_PAGES = {
    "torch.Tensor": "tensors.html",
    "torch.dtype": "tensor_attributes.html",
    "torch.device": "tensor_attributes.html",
    "torch.utils.data.Dataset": "data.html",
    "torch.nn.Module": "generated/torch.nn.Module.html",
    "torch.Generator": "generated/torch.Generator.html",
    "torch.optim.Optimizer": "optim.html",
}

# Names autodoc writes for base classes and annotations (the defining module, not the public
# one) -> the public name whose entry they share.
_TORCH_ALIASES = {
    "torch.nn.modules.module.Module": "torch.nn.Module",
    "torch.utils.data.dataset.Dataset": "torch.utils.data.Dataset",
    "torch._C.Generator": "torch.Generator",
    "torch.optim.optimizer.Optimizer": "torch.optim.Optimizer",
}

_NUMPY_PAGES = {"numpy.ndarray": "reference/generated/numpy.ndarray.html"}


def python_objects() -> dict[str, tuple[str, str, str]]:
    """Python's objects: name -> (role, uri, display name)."""
    objects = {}
    for module, names in _PYTHON_MODULE_PAGES.items():
        for name in names:
            full = f"{module}.{name}"
            objects[full] = ("py:class", f"library/{module}.html#{full}", "-")
    return objects


def torch_objects() -> dict[str, tuple[str, str, str]]:
    """PyTorch's objects (and the aliases autodoc writes): name -> (role, uri, display)."""
    objects = {name: ("py:class", f"{page}#{name}", "-") for name, page in _TORCH_PAGES.items()}
    for alias, name in _TORCH_ALIASES.items():
        role, uri, _ = objects[name]
        objects[alias] = (role, uri, name)
    return objects


def numpy_objects() -> dict[str, tuple[str, str, str]]:
    """NumPy's objects: name -> (role, uri, display name)."""
    return {name: ("py:class", f"{page}#{name}", "-") for name, page in _NUMPY_PAGES.items()}


PROJECTS = {
    "python": ("Python", "3", python_objects),
    "numpy": ("NumPy", "stable", numpy_objects),
    "torch": ("PyTorch", "stable", torch_objects),
}


def inventory_bytes(project: str, version: str, objects: dict[str, tuple[str, str, str]]) -> bytes:
    """The inventory file (version 2) of ``objects`` (name -> (role, uri, display name))."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(
        f"{name} {role} 1 {uri} {display}\n"
        for name, (role, uri, display) in sorted(objects.items())
    )
    return header.encode() + zlib.compress(body.encode(), 9)


def expected_files() -> dict[Path, bytes]:
    """Path -> content of every inventory file."""
    return {
        FOLDER / f"{key}.inv": inventory_bytes(project, version, make())
        for key, (project, version, make) in PROJECTS.items()
    }


def main(argv: list[str] | None = None) -> int:
    """Write the inventories, or with ``--check`` report those that differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale files, write none")
    args = parser.parse_args(argv)
    stale = [p for p, data in expected_files().items() if not p.is_file() or p.read_bytes() != data]
    if args.check:
        for path in stale:
            print(f"{path}: out of date (run python docs/make_inventories.py)", file=sys.stderr)
        return 1 if stale else 0
    FOLDER.mkdir(exist_ok=True)
    for path, data in expected_files().items():
        path.write_bytes(data)
    print(f"wrote {len(PROJECTS)} inventories to {FOLDER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
