"""Entry point of the `twin` command."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Each package's command module defines VERBS with light imports only (configs + lazy runners). A group that
# fails to import is an error naming the module: a broken install must not hide verbs silently.
GROUPS = ("spatial.commands", "scenes.commands", "sim.commands")


def verbs():
    out, seen = [], {}
    for mod in GROUPS:
        for v in importlib.import_module(mod).VERBS:
            if v.name in seen:
                raise RuntimeError(f"verb {v.name!r} is defined by both {seen[v.name]} and {mod}")
            seen[v.name] = mod
            out.append(v)
    return out


def build_parser() -> argparse.ArgumentParser:
    from twin_kit import add_config_arguments

    p = argparse.ArgumentParser(prog="twin", description="Phone capture to simulation-ready digital twin.")
    sub = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for v in verbs():
        words = v.name.split()
        if len(words) == 1:
            sp = sub.add_parser(words[0], help=v.help, description=v.help)
        else:
            if words[0] not in groups:
                gp = sub.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = gp.add_subparsers(dest="subverb", metavar="SUBVERB", required=True)
            sp = groups[words[0]].add_parser(words[1], help=v.help, description=v.help)
        add_config_arguments(sp, v.config)
        sp.add_argument("--json", action="store_true", help="print one JSON object with the results as the last line")
        sp.set_defaults(_verb=v)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    parser = build_parser()
    ns = parser.parse_args(argv)
    verb = ns._verb
    from twin_kit import InputError, config_from_namespace, console

    cfg = config_from_namespace(verb.config, ns)
    try:
        code = verb.run(cfg, json_out=ns.json)
    except InputError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        console.print(f"[red]error:[/red] {msg}", highlight=False)
        return 2
    except FileNotFoundError as e:
        console.print(f"[red]error:[/red] {e.filename or e}: not found", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
