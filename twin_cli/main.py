"""Entry point of the `twin` command."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

# Each package's command module defines VERBS with light imports only (configs + lazy runners). A group that
# fails to import is an error naming the module: a broken install must not hide verbs silently.
GROUPS = ("spatial.commands", "scenes.commands", "sim.commands", "policies.commands")


def verbs():
    out, seen = [], {}
    for mod in GROUPS:
        for v in importlib.import_module(mod).VERBS:
            if v.name in seen:
                raise RuntimeError(f"verb {v.name!r} is defined by both {seen[v.name]} and {mod}")
            seen[v.name] = mod
            out.append(v)
    return out


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line (like every other Twin error) and exit code 2."""

    def error(self, message: str):
        args = sys.argv[1:] if self._argv is None else self._argv
        raise SystemExit(_fail(f"{self.prog}: {message}", "--json" in args))

    _argv: list[str] | None = None


def build_parser() -> argparse.ArgumentParser:
    from twin_kit import add_config_arguments

    p = _Parser(prog="twin", description="Phone capture to simulation-ready digital twin.")
    sub = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for v in verbs():
        words = v.name.split()
        if len(words) == 1:
            sp = sub.add_parser(words[0], help=v.help, description=v.description or v.help)
        else:
            if words[0] not in groups:
                gp = sub.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = gp.add_subparsers(dest="subverb", metavar="SUBVERB", required=True)
            sp = groups[words[0]].add_parser(words[1], help=v.help, description=v.description or v.help)
        add_config_arguments(sp, v.config)
        sp.add_argument("--json", action="store_true", help="print one JSON object with the results as the last line")
        sp.set_defaults(_verb=v)
    return p


def private_glog_dir() -> str:
    """Send COLMAP's glog files to a private temporary folder, removed when the process exits.

    glog (inside pycolmap) writes a file per severity into the system temp folder whenever it logs an error,
    and reads GLOG_log_dir when pycolmap is imported, so this is set before any verb runs.
    """
    from twin_kit import private_temp_dir

    if not os.environ.get("GLOG_log_dir"):
        os.environ["GLOG_log_dir"] = str(private_temp_dir("glog"))
        if "pycolmap" in sys.modules:
            sys.modules["pycolmap"].logging.log_dir = os.environ["GLOG_log_dir"]
    return os.environ["GLOG_log_dir"]


def _interrupt_once(signum, frame) -> None:
    """SIGINT handler for the `twin` process: the first Ctrl-C raises KeyboardInterrupt and every later one is
    ignored. A native library that polls for signals (pycolmap waits on its C++ workers that way) can meet a
    second KeyboardInterrupt while it unwinds from the first, where it cannot propagate and aborts the process
    (SIGABRT, staging folders left behind); once interrupted, the process is already on its way out."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _exit_interrupted() -> None:
    """End the process after a Ctrl-C with status 130: run the exit handlers (private temp folders) with
    further Ctrl-C ignored, then leave without interpreter finalization, where a Ctrl-C that arrived during
    cleanup could still be acted on by the default disposition and end the process with -SIGINT."""
    import atexit
    import signal

    from twin_kit import console

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    console.print("[red]interrupted[/red]")
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(130)


def _fail(msg: str, json_out: bool) -> int:
    """Report a failed run: one line on stderr; with --json also {"error": ...} as the last stdout line."""
    from rich.markup import escape

    from twin_kit import console, emit_json

    console.print(f"[red]error:[/red] {escape(msg)}", highlight=False)
    if json_out:
        emit_json({"error": msg})
    return 2


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    parser = build_parser()
    _Parser._argv = argv
    ns = parser.parse_args(argv)
    verb = ns._verb
    from twin_kit import InputError, config_from_namespace, console, one_line, user_os_error

    private_glog_dir()
    if argv is None:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupt_once)
    try:
        cfg = config_from_namespace(verb.config, ns)
        code = verb.run(cfg, json_out=ns.json)
    except InputError as e:
        return _fail(one_line(e), ns.json)
    except FileNotFoundError as e:
        return _fail(f"{e.filename or e}: not found", ns.json)
    except OSError as e:
        if not user_os_error(e):
            raise
        return _fail(one_line(e), ns.json)
    except KeyboardInterrupt:
        if argv is None:  # the process is ending: cleanup is done, a further Ctrl-C must not cut the exit short
            _exit_interrupted()
        console.print("[red]interrupted[/red]")
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
