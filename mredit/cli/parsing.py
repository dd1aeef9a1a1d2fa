"""Command lines from typed, documented functions (jsonargparse), with one-line errors.

A command is a plain function: its typed parameters become ``--name value`` options (dataclass parameters
become ``--name.field`` groups), its Google-style docstring the help text. A ``CommandGroup`` names
subcommands, which may be groups again (``mredit judge batch run``). A function marked ``@bare_words("name")``
also takes the words of its command line that are not options as the list parameter ``name``
(``mredit eval compare a b`` is ``mredit eval compare --results '["a", "b"]'``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jsonargparse import ArgumentParser, DefaultHelpFormatter, Namespace

from mredit.training.errors import USER_ERRORS, condense_parse_error, root_message


@dataclass
class CommandGroup:
    """Subcommands under one name: ``description`` is the group's help text."""

    description: str
    commands: dict[str, Command] = field(default_factory=dict)


Command = Callable[..., Any] | CommandGroup


def bare_words(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a command function whose list parameter ``name`` also takes the bare words of its command line."""

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        function.__bare_words__ = name  # type: ignore[attr-defined]
        return function

    return mark


def _gather_bare_words(command: Command, argv: Sequence[str]) -> list[str]:
    """``argv`` with the bare words of a ``bare_words`` function moved into its list option (every option of
    these commands takes one value, so the word after an option without ``=`` is that option's value)."""
    path = _command_path(command, argv)
    for name in path:
        command = command.commands[name]  # type: ignore[union-attr]
    name = getattr(command, "__bare_words__", None)
    if name is None or isinstance(command, CommandGroup):
        return list(argv)
    rest, words, options, i = list(argv[len(path) :]), [], [], 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("-"):
            options.append(word)
            if "=" not in word and word not in ("-h", "--help") and i + 1 < len(rest):
                options.append(rest[i + 1])
                i += 1
        else:
            words.append(word)
        i += 1
    if not words:
        return list(argv)
    return [*argv[: len(path)], f"--{name}", json.dumps(words), *options]


class _HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's option help (types, defaults) with the description's layout (examples) kept."""


def summary(command: Command) -> str:
    """The first line of a command's docstring (or of a group's description): its line in a list."""
    text = command.description if isinstance(command, CommandGroup) else inspect.getdoc(command) or ""
    return text.strip().splitlines()[0].rstrip(".") if text.strip() else ""


def _description(command: Command) -> str:
    """The docstring without its ``Args:`` section."""
    text = command.description if isinstance(command, CommandGroup) else inspect.getdoc(command) or ""
    return text.split("\nArgs:\n")[0].rstrip()


def _new_parser(prog: str | None, command: Command) -> ArgumentParser:
    return ArgumentParser(
        prog=prog, description=_description(command), formatter_class=_HelpFormatter, exit_on_error=False
    )


def _populate(parser: ArgumentParser, command: Command, skip: set[str] = frozenset()) -> None:
    if not isinstance(command, CommandGroup):
        parser.add_function_arguments(command, as_positional=False, as_group=False, skip=set(skip))
        return
    if not command.commands:  # a stand-in that only carries a help line
        return
    subcommands = parser.add_subcommands(required=True)
    for name, sub in command.commands.items():
        child = _new_parser(None, sub)
        subcommands.add_subcommand(name, child, help=summary(sub))  # a child is added before its own children
        _populate(child, sub)


def build_parser(prog: str, command: Command, skip: set[str] = frozenset()) -> ArgumentParser:
    """The parser of ``command``: its options (but ``skip``), or (for a group) one subcommand per entry,
    recursively."""
    parser = _new_parser(prog, command)
    _populate(parser, command, skip)
    return parser


def _selected(command: Command, config: Namespace) -> tuple[Callable[..., Any], list[str], dict[str, Any]]:
    """The function the parsed ``config`` selects, the subcommand names leading to it, and its arguments."""
    path: list[str] = []
    while isinstance(command, CommandGroup):
        name = config["subcommand"]
        path.append(name)
        command, config = command.commands[name], config[name]
    return command, path, dict(vars(config))


def _command_path(command: Command, argv: Sequence[str]) -> list[str]:
    """The subcommand names at the start of ``argv`` (for the prefix of a parse error)."""
    path = []
    for word in argv:
        if not isinstance(command, CommandGroup) or word not in command.commands:
            break
        path.append(word)
        command = command.commands[word]
    return path


def _parse_error(message: str, path: list[str]) -> str:
    """One line, with option names as the user types them (``--num``, not ``synth.num``)."""
    message = condense_parse_error(message)
    prefix = "".join(f"{name}." for name in path)  # jsonargparse's keys start with the subcommand names
    required = "the following arguments are required: "
    if message.startswith(required):
        names = message.removeprefix(required).split(", ")
        return required + ", ".join(f"--{name.removeprefix(prefix)}" for name in names)
    return message.replace(f'"{prefix}subcommand"', '"subcommand"')


def run_command(prog: str, command: Command, argv: Sequence[str], /, **fixed: Any) -> int:
    """Parse ``argv`` for ``command`` and call the selected function (with ``fixed``: arguments of a function
    command that are not options, such as the command line itself).

    Returns 0 on success, 2 for a bad command line and 1 for a user error (``ValueError``, ``FileNotFoundError``,
    ``RuntimeError``), each reported as one ``<prog> <subcommand>: error: <message>`` line on stderr (set
    ``MREDIT_DEBUG=1`` for the traceback of a user error). ``--help`` prints the help and returns 0.
    """
    parser = build_parser(prog, command, skip=set(fixed))
    if not argv and isinstance(command, CommandGroup):
        parser.print_help()
        return 2
    argv = _gather_bare_words(command, argv)
    try:
        config = parser.instantiate(parser.parse_args(list(argv)))
    except argparse.ArgumentError as e:
        path = _command_path(command, argv)
        print(f"{' '.join([prog, *path])}: error: {_parse_error(str(e), path)}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    function, path, kwargs = _selected(command, config)
    try:
        function(**kwargs, **fixed)
    except USER_ERRORS as e:
        if os.environ.get("MREDIT_DEBUG"):
            raise
        print(f"{' '.join([prog, *path])}: error: {root_message(e)}", file=sys.stderr)
        return 1
    return 0
