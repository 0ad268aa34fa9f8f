"""The software that wrote a file: recorded in every checkpoint's meta.json."""

from __future__ import annotations

import importlib
import platform


def versions(*modules: str) -> dict[str, str]:
    """{module: its __version__} for the named (already installed) modules, plus Python's: what a checkpoint's
    meta.json records about the software that wrote it."""
    found = {name: str(getattr(importlib.import_module(name), "__version__", "unknown")) for name in modules}
    return {**found, "python": platform.python_version()}
