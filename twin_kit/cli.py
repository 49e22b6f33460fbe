"""Typed dataclass configs turned into argparse options, plus the output helpers every verb shares."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from twin_kit.errors import InputError

console = Console(stderr=True, soft_wrap=True)


def opt(default: Any = dataclasses.MISSING, help: str = "", *, positional: bool = False, flag: str | None = None,
        choices: tuple | None = None, metavar: str | None = None, low: float | None = None,
        high: float | None = None, low_open: bool = False, high_open: bool = False, also: tuple = (),
        finite: bool = True, multiple_of: int | None = None, pattern: str | None = None, pattern_help: str = ""):
    """A documented config field; `positional` makes it a CLI argument rather than an option.

    The rest declare the field's valid values, checked by `validate_config` for every verb before it runs:
    `low`/`high` bounds (inclusive unless `low_open`/`high_open`), `also` extra values allowed outside them
    (e.g. 0 = auto), `finite` (floats: no NaN or inf; on by default), `multiple_of`, `choices`, and for
    strings a regular expression `pattern` that must match whole (described to the user by `pattern_help`).
    """
    meta = {"help": help, "positional": positional, "flag": flag, "choices": choices, "metavar": metavar,
            "low": low, "high": high, "low_open": low_open, "high_open": high_open, "also": tuple(also),
            "finite": finite, "multiple_of": multiple_of, "pattern": pattern, "pattern_help": pattern_help}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def option_name(f: dataclasses.Field) -> str:
    """How the user spells a config field on the command line: `--lr-means`, or the positional's name."""
    meta = f.metadata or {}
    if meta.get("positional"):
        return f.name.upper()
    return meta.get("flag") or "--" + f.name.replace("_", "-")


def _range_text(meta: dict, integer: bool) -> str:
    lo, hi = meta.get("low"), meta.get("high")
    kind = "an integer" if integer else "a finite number" if meta.get("finite", True) else "a number"
    if meta.get("multiple_of"):
        kind += f" multiple of {meta['multiple_of']}"
    fmt = (lambda v: str(int(v))) if integer else (lambda v: f"{v:g}")
    if lo is not None and hi is not None:
        text = (f"{kind} in {'(' if meta.get('low_open') else '['}{fmt(lo)}, {fmt(hi)}"
                f"{')' if meta.get('high_open') else ']'}")
    elif lo is not None:
        text = f"{kind} {'>' if meta.get('low_open') else '>='} {fmt(lo)}"
    elif hi is not None:
        text = f"{kind} {'<' if meta.get('high_open') else '<='} {fmt(hi)}"
    else:
        text = kind
    also = meta.get("also") or ()
    return f"{' or '.join(fmt(a) for a in also)} or {text}" if also else text


def _check_number(name: str, v: Any, meta: dict, integer: bool) -> None:
    import math

    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise InputError(f"{name} must be {_range_text(meta, integer)}, got {v!r}")
    if v in (meta.get("also") or ()):
        return
    lo, hi = meta.get("low"), meta.get("high")
    bad = (isinstance(v, float) and meta.get("finite", True) and not math.isfinite(v)) or math.isnan(v)
    bad = bad or (lo is not None and (v <= lo if meta.get("low_open") else v < lo))
    bad = bad or (hi is not None and (v >= hi if meta.get("high_open") else v > hi))
    bad = bad or bool(meta.get("multiple_of") and v % meta["multiple_of"])
    if bad:
        raise InputError(f"{name} must be {_range_text(meta, integer)}, got {v:g}" if isinstance(v, float)
                         else f"{name} must be {_range_text(meta, integer)}, got {v}")


def validate_config(cfg: Any) -> Any:
    """Check every field of a config dataclass against its declaration (type, `opt` constraints, Literal
    choices); raises InputError with a one-line message naming the option. Returns `cfg`."""
    import re

    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        meta = f.metadata or {}
        name = option_name(f)
        tp, optional = _unwrap_optional(hints[f.name])
        if v is None:
            if optional or f.default is None:
                continue
            raise InputError(f"{name} is required")
        choices = meta.get("choices")
        if typing.get_origin(tp) is typing.Literal:
            choices = typing.get_args(tp)
        if choices and v not in choices:
            raise InputError(f"{name} must be one of {', '.join(map(str, choices))}; got {v!r}")
        origin = typing.get_origin(tp)
        if origin in (list, tuple):
            items, elem = list(v), (typing.get_args(tp) or (Any,))[0]
        else:
            items, elem = [v], tp
        for x in items:
            if elem is bool:
                if not isinstance(x, bool):
                    raise InputError(f"{name} must be true or false, got {x!r}")
            elif elem in (int, float):
                _check_number(name, x, meta, integer=elem is int)
            elif elem is str and meta.get("pattern") and not re.fullmatch(meta["pattern"], str(x)):
                raise InputError(f"{name} must be {meta.get('pattern_help') or 'of the form ' + meta['pattern']}"
                                 f", got {x!r}")
    return cfg


@dataclass(frozen=True)
class Verb:
    """One CLI verb: its (possibly two-word) name, the config dataclass, and the function that runs it."""

    name: str
    config: type
    run: Callable[[Any], int | None]
    help: str
    description: str = ""  # the verb's --help text, when longer than the one-line `help`


def _unwrap_optional(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one argparse argument per dataclass field, using its type, default and help."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, optional = _unwrap_optional(hints[f.name])
        meta = f.metadata or {}
        kw: dict[str, Any] = {"help": meta.get("help", "")}
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        origin = typing.get_origin(tp)
        if typing.get_origin(tp) is typing.Literal:
            kw["choices"] = list(typing.get_args(tp))
            tp = type(typing.get_args(tp)[0])
        if meta.get("positional"):
            if origin in (list, tuple):
                kw["nargs"] = "+"
                tp = typing.get_args(tp)[0]
            elif has_default:
                kw["nargs"] = "?"
                kw["default"] = default
            parser.add_argument(f.name, type=_converter(tp), **kw)
            continue
        name = meta.get("flag") or "--" + f.name.replace("_", "-")
        if tp is bool:
            parser.add_argument(name, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=bool(default), **kw)
            continue
        if origin in (list, tuple):
            args = typing.get_args(tp)
            kw["nargs"] = len(args) if origin is tuple and Ellipsis not in args else "+"
            tp = args[0]
        if has_default:
            kw["default"] = default
            if default is not None and default != [] and "help" in kw:
                kw["help"] = (kw["help"] + f" (default: {default})").strip()
        else:
            kw["required"] = True
        parser.add_argument(name, dest=f.name, type=_converter(tp), **kw)


def _converter(tp):
    if tp in (int, float, str):
        return tp
    if tp is Path:
        return Path
    return str


def config_from_namespace(cls: type, ns: argparse.Namespace):
    """The config dataclass of a parsed command line, validated (InputError names the bad option)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        v = getattr(ns, f.name)
        if isinstance(v, list) and typing.get_origin(typing.get_type_hints(cls)[f.name]) is tuple:
            v = tuple(v)
        kwargs[f.name] = v
    return validate_config(cls(**kwargs))


def emit_json(obj: dict) -> None:
    """Print one JSON object as the last line of standard output."""
    sys.stdout.write(json.dumps(obj, default=_default) + "\n")
    sys.stdout.flush()


def _default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)


def progress(quiet: bool = False) -> Progress:
    """A rich progress bar on stderr, so that stdout stays machine-readable (off when stderr is not a terminal:
    a log file gets the result lines only)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
                    disable=quiet or not console.is_terminal, transient=True)


def info(msg: str) -> None:
    console.print(msg, highlight=False)


def warn(msg: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {msg}", highlight=False)
