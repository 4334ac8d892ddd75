"""``ggic local logs get``: greengrass-cli's ``logs get`` over the root's log files.

greengrass-cli's flags: ``-lf/--log-file FILE`` and ``-ld/--log-dir DIR`` (repeatable; default
here: ``<root>/logs/greengrass.log``), ``-f/--filter EXPR`` (repeatable: every ``-f`` must
match; within one, comma-separated alternatives of which one must match: a regular expression
searched in the line, ``level=LEVEL`` for that level or above, or ``key=value`` as the
nucleus's text format writes context pairs), ``-fol/--follow`` (keep printing new lines until
Ctrl-C). The older ``ggic local logs [NAME] [-f] [-n N]`` (where ``-f`` follows) still works:
greengrass-cli's meaning of ``-f`` applies only after ``get``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from .component_logs import runtime_log_path

LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
_LEVEL = re.compile(r"^\S+ \[([A-Z]+)\] ")


class FilterError(ValueError):
    """A filter expression greengrass-cli would refuse."""


def _alternative(element: str):
    if "=" not in element:
        try:
            pattern = re.compile(element)
        except re.error as exc:
            raise FilterError(f"Filter expression provided invalid: {element} ({exc})") from None
        return lambda line: pattern.search(line) is not None
    key, sep, value = element.partition("=")
    if not key or "=" in value:
        raise FilterError(f"Filter expression provided invalid: {element}")
    if key == "level" and value.upper() in LEVELS:
        wanted = LEVELS.index(value.upper())

        def at_least(line: str) -> bool:
            found = _LEVEL.match(line)
            return found is not None and found.group(1) in LEVELS and \
                LEVELS.index(found.group(1)) >= wanted
        return at_least
    pair = f"{key}={value}"
    return lambda line: re.search(rf"[{{ ,]{re.escape(pair)}[,}}]", line) is not None


def line_filter(expressions: Sequence[str]):
    """A predicate: every expression matches (AND), one alternative within each (OR)."""
    groups = [[_alternative(e) for e in expression.split(",")] for expression in expressions]
    return lambda line: all(any(alt(line) for alt in group) for group in groups)


def log_files(root: Path, files: Iterable[Path], dirs: Iterable[Path]) -> list[Path]:
    chosen = list(files)
    for folder in dirs:
        chosen.extend(sorted(folder.glob("*.log")))
    return chosen or [runtime_log_path(root)]


def logs_get(root: Path, argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="ggic local logs get",
                                     description="greengrass-cli's logs get (see cli_logs)")
    parser.add_argument("-lf", "--log-file", dest="files", action="append", type=Path,
                        default=[])
    parser.add_argument("-ld", "--log-dir", dest="dirs", action="append", type=Path, default=[])
    parser.add_argument("-f", "--filter", dest="filters", action="append", default=[])
    parser.add_argument("-fol", "--follow", action="store_true")
    args = parser.parse_args(list(argv))
    try:
        keep = line_filter(args.filters)
    except FilterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = log_files(root, args.files, args.dirs)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        print(f"error: no log file {missing[0]}", file=sys.stderr)
        return 1
    streams = [p.open("r", encoding="utf-8", errors="replace") for p in paths]
    try:
        for stream in streams:
            sys.stdout.writelines(line for line in stream if keep(line))
        sys.stdout.flush()
        while args.follow:
            quiet = True
            for stream in streams:
                line = stream.readline()
                if line:
                    quiet = False
                    if keep(line):
                        sys.stdout.write(line)
                        sys.stdout.flush()
            if quiet:
                time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for stream in streams:
            stream.close()
    return 0


def run_logs_command(args: argparse.Namespace) -> int:
    """``logs get ...`` (greengrass-cli's flags) or the older ``logs [NAME] [-f] [-n N]``."""
    from .cli_commands import resolve_root, run_logs

    rest = list(getattr(args, "rest", None) or [])
    extra = argparse.ArgumentParser(prog="ggic local logs", add_help=False)
    extra.add_argument("--root", type=Path, default=None)
    if args.name == "get":
        known, argv = extra.parse_known_args(rest)
        return logs_get(resolve_root(known.root or args.root), argv)
    extra.add_argument("-f", "--follow", action="store_true")
    extra.add_argument("-n", "--lines", type=int, default=None)
    known = extra.parse_args(rest)
    args.root = known.root or args.root
    args.follow = args.follow or known.follow
    args.lines = known.lines if known.lines is not None else args.lines
    return run_logs(args)
