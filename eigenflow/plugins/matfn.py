"""Plugin family module `matfn` (registered through the entry point group ``eigenflow``)."""

from ..registry import hookimpl


@hookimpl
def eigenflow_register(registry):
    """Registers this family's components."""
