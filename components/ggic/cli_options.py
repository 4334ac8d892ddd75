"""Command-line flags generated from the configuration dataclasses.

Every configuration key gets a flag (``ModelDir`` -> ``--model-dir``) whose help is the key's
documentation, so ``--help`` is complete and always matches the code. A flag given on the
command line overrides the key's value from Greengrass IPC configuration.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from .config import describe_settings


def flag_for(key: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", key.replace("IoT", "Iot"))
    return "--" + words.lower()


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type,
                     skip: tuple[str, ...] = ()) -> None:
    group = parser.add_argument_group(
        "configuration overrides",
        "Each flag overrides the component configuration key in brackets (read over IPC).",
    )
    for key, default, doc in describe_settings(config_cls):
        if key in skip:
            continue
        shown = list(default) if isinstance(default, tuple) else default
        group.add_argument(
            flag_for(key), dest=f"config_{key}", metavar="VALUE", default=None,
            help=f"[{key}] {doc} Default: {shown!r}.",
        )


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration keys given as flags."""
    return {
        name[len("config_"):]: value
        for name, value in vars(args).items()
        if name.startswith("config_") and value is not None
    }
