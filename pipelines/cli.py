"""Shared argparse helpers for the stage scripts: every field of a config dataclass becomes a kebab-case flag."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def number(kind: type = float, low: float | None = None, high: float | None = None, low_open: bool = False,
           allow_inf: bool = False, name: str | None = None) -> Callable[[str], Any]:
    """An argparse `type` for a number of `kind` (int or float) in [low, high] (low excluded with `low_open`):
    NaN is always refused and infinities unless `allow_inf`, each with the reason."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if kind is float and math.isnan(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number (NaN); give a finite value")
        if kind is float and math.isinf(value) and not allow_inf:
            raise argparse.ArgumentTypeError(f"{text!r} is infinite; give a finite value")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"{text} is out of range: need {'>' if low_open else '>='} {low:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: need <= {high:g}")
        return value

    parse.__name__ = name or kind.__name__
    return parse


finite_float = number(float, name="finite_float")
positive_float = number(float, 0, low_open=True, name="positive_float")
non_negative_float = number(float, 0, name="non_negative_float")
probability = number(float, 0, 1, name="probability")
positive_int = number(int, 1, name="positive_int")
non_negative_int = number(int, 0, name="non_negative_int")
at_least_two = number(int, 2, name="at_least_two")  # sample counts that FID/KID statistics need


def _comma_ints(text: str, low: int, example: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of whole numbers, e.g. {example}") from None
    if min(values) < low:
        raise argparse.ArgumentTypeError(f"{text!r}: every value must be >= {low}")
    return values


def int_list(text: str) -> tuple[int, ...]:
    """An argparse `type` for a comma list of whole numbers >= 1, e.g. "1,2,4"."""
    return tuple(_comma_ints(text, 1, "1,2,4"))


def class_list(text: str) -> str:
    """An argparse `type` for a comma list of class labels (whole numbers >= 0), kept as the text."""
    _comma_ints(text, 0, "0,3,7")
    return text


def respacing(text: str) -> str:
    """An argparse `type` for a timestep respacing ("250", "10,10,10", "ddim50", "trailing20"): its form checked
    now, its step counts against the model's T once the model is loaded."""
    from diffusion.config import parse_respacing  # torch-free

    try:
        parse_respacing(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


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
    parser.add_argument("--data", default=None, help="with --pixels: fashion_mnist, openclipart or an image folder "
                        "(default: the images the run's VAE was trained on, else fashion_mnist)")
    parser.add_argument("--limit", type=number(int, 2), default=None, help="use only the first N training examples")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=positive_int, default=None,
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
            parse = f.metadata.get("type") or (finite_float if kind is float else kind)
            note = f.metadata.get("help")
            group.add_argument(flag, dest=f.name, type=parse, default=None, metavar=kind.__name__.upper(),
                               help=f"{note} {hint}".strip() if note else hint)


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
    from runfs.errors import RunError

    if threads is not None:
        torch.set_num_threads(threads)
    try:
        session = build()
        last = session.loop.run()
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        cleanup_distributed()
    interrupted = session.loop.stop_requested
    if session.dist.is_main:
        state = "interrupted; rerun the same command to continue" if interrupted else "done"
        print(f"{state}: step {session.loop.step}, checkpoint {last}")
    return 130 if interrupted else 0  # a caller (make, demo.py) must not take an interrupted run as complete


def run_main(main: Callable[[], Any]) -> int:
    """`main()` of a stage script, with the run-folder errors (runfs.errors.RunError: a damaged file, a full disk, a
    folder that cannot be written, stages built from different things) printed as one `error:` line, exit code 2."""
    from runfs.errors import RunError

    try:
        code = main()
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return code if isinstance(code, int) else 0
