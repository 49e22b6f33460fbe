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

console = Console(stderr=True, soft_wrap=True)


def opt(default: Any = dataclasses.MISSING, help: str = "", *, positional: bool = False, flag: str | None = None,
        choices: tuple | None = None, metavar: str | None = None):
    """A documented config field; `positional` makes it a CLI argument rather than an option."""
    meta = {"help": help, "positional": positional, "flag": flag, "choices": choices, "metavar": metavar}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Verb:
    """One CLI verb: its (possibly two-word) name, the config dataclass, and the function that runs it."""

    name: str
    config: type
    run: Callable[[Any], int | None]
    help: str


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
    kwargs = {}
    for f in dataclasses.fields(cls):
        v = getattr(ns, f.name)
        if isinstance(v, list) and typing.get_origin(typing.get_type_hints(cls)[f.name]) is tuple:
            v = tuple(v)
        kwargs[f.name] = v
    return cls(**kwargs)


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
    """A rich progress bar on stderr, so that stdout stays machine-readable."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
                    disable=quiet, transient=True)


def info(msg: str) -> None:
    console.print(msg, highlight=False)


def warn(msg: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {msg}", highlight=False)
