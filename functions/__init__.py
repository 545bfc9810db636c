"""One package per workflow: ``functions/<name>/handler.py``."""
