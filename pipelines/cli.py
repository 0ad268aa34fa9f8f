"""Shared argparse helpers for the stage scripts: every field of a config dataclass becomes a kebab-case flag."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except None: an unset flag's meaning is in its help text (the preset's value...)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=doc, formatter_class=HelpFormatter)


def add_training_args(parser: argparse.ArgumentParser, writes: str) -> None:
    """The flags every stage-2 training script shares (data source, device, progress)."""
    # --run-dir: under torchrun, `--run` is an ambiguous prefix of torchrun's own --run-path.
    parser.add_argument("--run", "--run-dir", dest="run", required=True,
                        help=f"run folder (reads DIR/latents, writes DIR/{writes}); under torchrun write --run-dir")
    parser.add_argument("--pixels", action="store_true",
                        help=f"train on images instead of latents (pixel-space baseline); writes DIR/pixel_{writes}")
    parser.add_argument("--data", default="fashion_mnist", help="with --pixels: fashion_mnist or an image folder")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training examples")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice, one per core); 1 when another heavy job "
                             "shares the cores, or both jobs slow down many times over (docs/training.md)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_data_access_args(parser: argparse.ArgumentParser) -> None:
    """How stage 1 reads a folder or tfds source (vae.data.open_dataset): cache and file index."""
    parser.add_argument("--cache", choices=["auto", "on", "off"], default="auto",
                        help="decode a folder/tfds source once into a uint8 file in RUN/data/, read by memory map "
                             "(auto: when it takes at most 512 MiB); otherwise every epoch streams the files with "
                             "parallel decode")
    parser.add_argument("--rebuild-index", action="store_true",
                        help="list the data folder anew (a new train/validation split) instead of the file index "
                             "in RUN/data/; needed after files were added or removed")


def preset_hint(name: str, presets: Mapping[str, Any]) -> str:
    """'(default: V)' when every preset has the same value for field `name`, else each preset's value; '' when every
    preset leaves it None (the flag's own help says what unset means)."""
    values = {label: getattr(config, name) for label, config in presets.items()}
    if all(value is None for value in values.values()):
        return ""
    if len(set(map(repr, values.values()))) == 1:
        return f"(default: {next(iter(values.values()))!r})"
    return "(default: the preset's: " + ", ".join(f"{label} {value!r}" for label, value in values.items()) + ")"


def add_config_args(parser: argparse.ArgumentParser, cls: type, title: str, skip: tuple[str, ...] = (),
                    presets: Mapping[str, Any] | None = None) -> None:
    """One flag per field of dataclass `cls`; unset flags stay None so the preset's value is kept.

    presets: label -> the `cls` instance each preset starts from, so that the help shows the values a run really gets
    (the dataclass's own defaults when not given)."""
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        flag = "--" + f.name.replace("_", "-")
        hint = preset_hint(f.name, presets) if presets else f"(default: {default!r})"
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


def run_training(build, threads: int | None = None) -> int:
    """Build a training session with `build()`, run it, and turn the user's errors into messages and exit codes
    (2: bad input, 3: diverged, 130: interrupted and saved); DDP process groups are always torn down."""
    import torch

    from diffusion.training import TrainingDiverged
    from diffusion.training.distributed import cleanup_distributed

    if threads is not None:
        if threads < 1:
            print(f"error: --threads must be >= 1, got {threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(threads)
    try:
        session = build()
        last = session.loop.run()
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        cleanup_distributed()
    interrupted = session.loop.stop_requested
    if session.dist.is_main:
        state = "interrupted; rerun the same command to continue" if interrupted else "done"
        print(f"{state}: step {session.loop.step}, checkpoint {last}")
    return 130 if interrupted else 0  # a caller (make, demo.py) must not take an interrupted run as complete
