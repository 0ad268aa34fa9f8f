"""Shared argparse helpers for the stage scripts: every field of a config dataclass becomes a kebab-case flag."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_config_args(parser: argparse.ArgumentParser, cls: type, title: str, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of dataclass `cls`; unset flags stay None so the preset's value is kept."""
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        flag = "--" + f.name.replace("_", "-")
        hint = f"(preset default: {default!r})"
        if isinstance(default, bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=hint)
        else:
            kind = type(default) if default is not None else str
            group.add_argument(flag, dest=f.name, type=kind, default=None, metavar=kind.__name__.upper(), help=hint)


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of `cls` that the user set on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}


def apply_args(base: T, args: argparse.Namespace) -> T:
    """`base` (a preset) with the user's flags for its fields applied."""
    return dataclasses.replace(base, **given(args, type(base)))  # type: ignore[type-var]
