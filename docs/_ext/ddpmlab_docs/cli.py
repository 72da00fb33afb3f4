"""The command-line reference, generated from ``ddpmlab.cli.parser.build_parser``: every
subcommand, every flag, its metavar, its default and its help, in the parser's order."""

from __future__ import annotations

import argparse
import re

from .common import code, table

_DEFAULT = re.compile(r"\s*\(default: (.*)\)\s*$", re.S)


def _default(action: argparse.Action) -> tuple[str, str]:
    """(help without its "(default: ...)" tail, the default as the parser states it)."""
    text = " ".join((action.help or "").split())
    match = _DEFAULT.search(text)
    if match:
        return text[:match.start()], match.group(1)
    if isinstance(action, argparse._StoreTrueAction):
        return text, "off"
    if action.default in (None, argparse.SUPPRESS):
        return text, "required" if action.required else "none"
    if isinstance(action.default, list | tuple):
        return text, " ".join(str(v) for v in action.default)
    return text, str(action.default)


def _flag(action: argparse.Action) -> str:
    names = ", ".join(action.option_strings) or (action.metavar or action.dest)
    if action.choices is not None and action.option_strings:
        return f"{names} {{{','.join(str(c) for c in action.choices)}}}"
    if action.nargs == 0:
        return names
    metavar = action.metavar or action.dest.upper()
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    more = " ..." if action.nargs in ("+", "*") else ""
    return f"{names} {metavar}{more}" if action.option_strings else names


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def page() -> str:
    from ddpmlab.cli.parser import build_parser

    parser = build_parser()
    subs = _subcommands(parser)
    helps = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
    out = ["# Command line\n",
           "Generated from the parser itself (`ddpmlab.cli.parser.build_parser`): every "
           "subcommand and every flag with its default. `ddpmlab COMMAND --help` prints the "
           "same. Where a default depends on the data (points, digits, MNIST), each is "
           "given. Abbreviated flags are refused; a mistake ends with one line and exit "
           "status 2.\n",
           "| command | what it does |\n|---|---|"]
    out += [f"| [`{name}`](#ddpmlab-{name}) | {helps.get(name, '')} |" for name in subs]
    out.append("")
    for name, sub in subs.items():
        out.append(f"(ddpmlab-{name})=\n## `ddpmlab {name}`\n")
        if sub.description:
            out.append(" ".join(sub.description.split()) + "\n")
        usage = " ".join(sub.format_usage().split())
        usage = usage.removeprefix("usage: ")
        out.append(f"```text\n{usage}\n```\n")
        rows = []
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text, default = _default(action)
            rows.append([code(_flag(action)), default, text])
        out.append(table(["argument", "default", "meaning"], rows))
    return "\n".join(out)
