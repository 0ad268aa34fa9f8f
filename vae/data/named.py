"""Data sources known by name besides Fashion-MNIST: folders that a system package installs."""

from __future__ import annotations

import os
from pathlib import Path

# Debian's openclipart-png: 8,121 PNG clip-art images (most with alpha, many sizes) in 22 category folders, the
# labels. Real, varied RGB images available without a network.
OPENCLIPART_DIR = "/usr/share/openclipart/png"


def resolve_named(source: str) -> str:
    """A source name -> the folder it stands for ("openclipart": $OPENCLIPART_DIR or Debian's folder); any other
    source is returned as it is. A missing package is an error that says how to install it."""
    if source != "openclipart":
        return source
    folder = Path(os.environ.get("OPENCLIPART_DIR") or OPENCLIPART_DIR)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"--data openclipart reads {folder}, which does not exist: install Debian's package "
            "(`apt-get install openclipart-png`; `make setup` does it where apt is available), or point "
            "$OPENCLIPART_DIR at a copy of its png/ folder")
    return str(folder)
