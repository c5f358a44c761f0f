"""MkDocs hook: the command-line reference, generated from the ``explorer`` command's own parser.

A page holding ``<!-- cli-reference -->`` gets, in its place, every verb with its usage, description and
arguments, read from :func:`explorer.cli.parser.build_parser`: the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse

MARKER = "<!-- cli-reference -->"


def _argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | default | what |", "|---|---|---|"]
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        if isinstance(action, argparse._HelpAction):
            continue
        name = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
        if action.option_strings and action.metavar and action.nargs != 0:
            name += f" `{action.metavar}`"
        elif action.option_strings and action.choices and action.nargs != 0:
            name += " `{" + ",".join(map(str, action.choices)) + "}`"
        default = "" if action.default in (None, False, argparse.SUPPRESS) or action.nargs == 0 else f"`{action.default}`"
        text = (action.help or "").replace("%%", "%").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| {name} | {default} | {text} |")
    return rows


def cli_reference() -> str:
    """The reference of every verb of the ``explorer`` command, as markdown."""
    from explorer.cli.parser import build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in verbs._choices_actions}
    out = []
    for name, sub in verbs.choices.items():
        sub.prog = f"explorer {name}"
        usage = " ".join(sub.format_usage().split())
        out += [f"## `explorer {name}`", "", helps.get(name, "").capitalize() + ".", "", "```", usage, "```", ""]
        rows = _argument_rows(sub)
        if len(rows) > 2:
            out += rows + [""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace the marker with the generated reference."""
    return markdown.replace(MARKER, cli_reference()) if MARKER in markdown else markdown
