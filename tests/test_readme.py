"""The README stays true to the code: every configuration key with its default, every error
code, and the commands it names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ggic.cli import build_parser
from ggic.config import ClassifierConfig, RequesterConfig, describe_settings
from ggic.messages import ErrorCode

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def shown(value) -> str:
    if value is None or value == "":
        return '""'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def section(title: str) -> str:
    start = README.index(f"### `{title}`")
    end = README.find("\n#", start + 1)
    return README[start:end]


@pytest.mark.parametrize("config_cls, component", [
    (ClassifierConfig, "com.custom.ImageClassifier"), (RequesterConfig, "com.custom.requester")])
def test_every_configuration_key_is_documented_with_its_default(config_cls, component):
    text = section(component)
    for key, default, _doc in describe_settings(config_cls):
        row = re.search(rf"^\| `{key}` \| `([^`]*)`", text, re.MULTILINE)
        assert row, f"{key} is missing from the README's configuration tables"
        assert row.group(1) == shown(default), f"{key}: README says {row.group(1)}"


def test_every_error_code_is_documented():
    for code in ErrorCode:
        assert f"| `{code.value}` |" in README


def test_commands_in_the_readme_exist():
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command in set(re.findall(r"ggic (\w[\w-]*)", README)):
        assert command in subcommands, f"README mentions `ggic {command}`"


def test_local_commands_in_the_readme_exist():
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    local = subcommands["local"]._subparsers._group_actions[0].choices
    mentioned = set(re.findall(r"ggic local (\w[\w-]*)", README))
    assert {"start", "deploy", "pubsub", "stop"} <= mentioned
    for command in mentioned:
        assert command in local, f"README mentions `ggic local {command}`"


def test_quick_start_runs_the_demo():
    block = README[README.index("## Quick start"):README.index("## The demo")]
    assert "./scripts/setup.sh && .venv/bin/ggic demo" in block
