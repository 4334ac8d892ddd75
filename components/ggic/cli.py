"""``ggic``: one entry point for the components, local tools and the local runtime."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .runtime_support import configure_logging


def build_parser() -> argparse.ArgumentParser:
    from .build_cli import add_build_parser
    from .classifier.cli import add_classifier_parser, add_classify_parser, add_tensor_parser
    from .cloud.cli import add_cloud_parser
    from .demo import add_demo_parser
    from .local.cli import add_local_parser
    from .modelgen.cli import add_model_parser
    from .requester.cli import add_requester_parser

    parser = argparse.ArgumentParser(
        prog="ggic",
        description="Greengrass V2 edge image classification: components, tools, local runtime.",
    )
    parser.add_argument("--version", action="version", version=f"ggic {__version__}")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: INFO")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_classifier_parser(subparsers)
    add_requester_parser(subparsers)
    add_classify_parser(subparsers)
    add_tensor_parser(subparsers)
    add_build_parser(subparsers)
    add_model_parser(subparsers)
    add_cloud_parser(subparsers)
    add_local_parser(subparsers)
    add_demo_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    configure_logging(args.log_level, to_stdout=getattr(args, "component", False))
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
