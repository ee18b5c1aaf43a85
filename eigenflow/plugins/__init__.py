"""eigenflow's own plugins. Each family module is named by an entry point in the group
``eigenflow`` (see ``pyproject.toml``) and registers itself through the
``eigenflow_register`` hook, exactly like a third-party plugin."""
