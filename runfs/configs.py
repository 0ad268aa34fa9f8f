"""A mixin giving stage config dataclasses `to_dict`/`from_dict` (unknown keys rejected) and JSON round trips."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Self

from runfs.atomic import read_json, write_json


class ConfigMixin:
    """Mix into a `@dataclass`: plain-dict and JSON round trips that refuse keys the dataclass does not know."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown key(s) {unknown}; valid keys are {names}")
        return cls(**data)

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes` applied; unknown names are rejected like in `from_dict`."""
        return type(self).from_dict({**self.to_dict(), **changes})

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Self:
        return cls.from_dict(read_json(path))
