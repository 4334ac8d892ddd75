"""``ggic build``: build every component of the project into GDK's greengrass-build layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .gdk_build import BUILD_DIR, BuildError, build_all


def add_build_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build",
        help="build both components like `gdk component build` (no GDK needed)",
        description=(
            "Build every component project of the repository (the root's gdk-config.json and "
            "components/*/gdk-config.json) the way GDK's zip build does, into one "
            "greengrass-build folder: recipes/ with artifact URIs, artifacts/<name>/<version>/. "
            "Deploy it with `greengrass-cli deployment create --recipeDir greengrass-build/"
            "recipes --artifactDir greengrass-build/artifacts` or `ggic local deploy`."
        ),
    )
    parser.add_argument("--project-dir", type=Path, default=Path("."),
                        help="repository root (default: the current directory)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default: PROJECT_DIR/{BUILD_DIR})")
    parser.set_defaults(handler=run_build_command)


def run_build_command(args: argparse.Namespace) -> int:
    try:
        built = build_all(args.project_dir.resolve(), args.out)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not built:
        print(f"error: no gdk-config.json in {args.project_dir}", file=sys.stderr)
        return 2
    for recipe, artifacts in built:
        print(f"{recipe}\n  artifacts: {artifacts}")
    return 0
