"""``ggic local``: run a local Greengrass runtime and drive it like ``greengrass-cli``.

``ggic local start`` runs a :class:`~ggic.local.runtime.LocalRuntime` in the foreground. The
other commands are clients: like greengrass-cli they read the runtime's CLI credentials
(``<root>/cli.token``: auth token and socket path) and call the greengrass-cli IPC operations
through the real awsiotsdk client (``GreengrassCoreIPCClientV2``). ``logs`` and ``iotcore``
read the root's files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_commands import (
    PID_FILE,
    run_component_action,
    run_component_details,
    run_component_list,
    run_deploy,
    run_deployment_cancel,
    run_deployment_list,
    run_deployment_status,
    run_iotcore,
    run_pub,
    run_stand_in_modelstore,
    run_start,
    run_stop,
    run_sub,
)
from .cli_deployment import run_get_debug_password
from .cli_iotcore import add_iotcore_subcommands
from .cli_logs import run_logs_command
from .runtime import IOT_CORE_LOG

# --- parsers -----------------------------------------------------------------------------------


def _root_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--root", type=Path, default=None,
                        help="the runtime's root folder (default: $GGIC_LOCAL_ROOT or "
                             ".ggic/local)")
    return parent


def add_local_parser(subparsers: argparse._SubParsersAction) -> None:
    root = _root_parent()
    parser = subparsers.add_parser(
        "local",
        help="a local Greengrass runtime: run, deploy and inspect the components without a "
             "device",
        description=(
            "Run the components on this machine, unchanged, under a local Greengrass runtime "
            "(IPC server for the real awsiotsdk client, recipes, lifecycles, local "
            "deployments, nucleus-style logs), and drive it with greengrass-cli's commands."),
    )
    commands = parser.add_subparsers(dest="local_command", metavar="LOCAL_COMMAND")
    _add_start(commands, root)
    _add_stop(commands, root)
    _add_deploy(commands, root, "deploy")
    _add_deployment(commands, root)
    _add_component(commands, root)
    _add_pubsub(commands, root)
    _add_logs(commands, root)
    _add_iotcore(commands, root)
    _add_stand_in(commands)
    password = commands.add_parser(
        "get-debug-password", parents=[root], help="a username and password as greengrass-cli "
        "gets them for the local debug console (there is none here)")
    password.set_defaults(handler=run_get_debug_password)
    from .cloudwatch_stand_in import add_metrics_parser  # issue 12
    add_metrics_parser(commands, root)  # issue 12: `ggic local metrics`
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)


def _add_start(commands: argparse._SubParsersAction, root: argparse.ArgumentParser) -> None:
    start = commands.add_parser(
        "start", parents=[root], help="run the runtime in the foreground",
        description=(
            "Run the local runtime in the foreground until Ctrl-C, SIGTERM or `ggic local "
            "stop`. Writes <root>/cli.token (mode 0600: what the other commands connect with) "
            f"and <root>/{PID_FILE}; resumes the root's last deployment. Logs: "
            "<root>/logs/greengrass.log and <root>/logs/<component>.log."))
    start.add_argument("--stand-in", dest="stand_ins", action="append", type=Path, default=[],
                       metavar="DIR",
                       help="a stand-in component folder offered to every deployment (e.g. "
                            "from `ggic local stand-in modelstore`); repeatable")
    start.add_argument("--thing-name", default=None,
                       help="{iot:thingName} and AWS_IOT_THING_NAME (default: ggic-local-core)")
    start.add_argument("--region", default="us-east-1", help="AWS_REGION for components")
    start.add_argument("--platform-override", dest="platform_overrides", action="append",
                       default=[], metavar="KEY=VALUE",
                       help="pretend to be another platform for manifest selection (e.g. "
                            "architecture=aarch64); repeatable or comma-separated")
    start.add_argument("--build-venvs", action="store_true",
                       help="let the Install steps build real virtual environments with pip "
                            "(minutes, needs the package index) instead of linking this "
                            "environment ($GGIC_REUSE_VENV)")
    start.add_argument("--default-user", default=None, metavar="USER[:GROUP]",
                       help="as root: run the components' lifecycle steps as this user "
                            "(RequiresPrivilege steps as root), as the nucleus's "
                            "runWithDefault.posixUser; default ggc_user:ggc_group if it "
                            "exists, else root (warned). Not root: ignored, every step runs "
                            "as you")
    start.add_argument("--no-resume", action="store_true",
                       help="don't restart the root's last deployment")
    start.add_argument("--skip-notify-components", action="store_true",
                       help="deploy without SubscribeToComponentUpdates events, as the nucleus "
                            "does for greengrass-cli deployments (default: notify, as for cloud "
                            "deployments)")
    start.add_argument("--component-update-timeout", type=float, default=60.0, metavar="S",
                       help="how long a deployment waits for components to answer an update "
                            "event, each round (default: 60, the nucleus's)")
    start.set_defaults(handler=run_start)


def _add_stop(commands: argparse._SubParsersAction, root: argparse.ArgumentParser) -> None:
    stop = commands.add_parser("stop", parents=[root], help="stop a runtime started with "
                               "`ggic local start`",
                               description="Send SIGTERM to the runtime of <root> (its pid "
                                           "file) and wait until it has stopped its components.")
    stop.add_argument("--timeout", type=float, default=120.0,
                      help="seconds to wait (default: 120)")
    stop.set_defaults(handler=run_stop)


def _add_deploy(commands: argparse._SubParsersAction, root: argparse.ArgumentParser,
                name: str) -> None:
    deploy = commands.add_parser(
        name, parents=[root], help="create a local deployment (greengrass-cli deployment "
                                   "create)",
        description=(
            "Create or update the local deployment, as `greengrass-cli deployment create`: "
            "recipes from --recipeDir, artifacts from --artifactDir/<name>/<version>/, root "
            "components added with --merge and removed with --remove, configuration changed "
            "with --update-config. Prints the deployment id; --wait waits for the result."))
    deploy.add_argument("-r", "--recipeDir", dest="recipe_dir", type=Path, default=None,
                        help="folder of recipe files (e.g. greengrass-build/recipes)")
    deploy.add_argument("-a", "--artifactDir", dest="artifact_dir", type=Path, default=None,
                        help="folder of artifacts laid out <name>/<version>/<file> (e.g. "
                             "greengrass-build/artifacts)")
    deploy.add_argument("-m", "--merge", action="append", default=[], metavar="NAME=VERSION",
                        help="add or update a root component; repeatable")
    deploy.add_argument("--remove", action="append", default=[], metavar="NAME",
                        help="remove root components (comma-separated); repeatable")
    deploy.add_argument("-c", "--update-config", dest="update_config", default=None,
                        metavar="JSON|FILE",
                        help='configuration update: {"<name>": {"MERGE": {...}, "RESET": '
                             '["/key"]}}, as JSON text or a JSON file')
    deploy.add_argument("-g", "--groupId", dest="group_id", default=None,
                        help="thing group of the deployment (recorded; one group here)")
    deploy.add_argument("--runWith", dest="run_with", action="append", default=[],
                        metavar="NAME:posixUser=USER[:GROUP]",
                        help="the POSIX user a component runs as when the runtime is root "
                             "(kept for later deployments; an empty user removes it), as "
                             "greengrass-cli's --runWith; repeatable")
    deploy.add_argument("--systemLimits", dest="system_limits", default=None,
                        metavar="JSON|FILE",
                        help='{"<name>": {"cpus": N, "memory": KB}} as JSON text or a file')
    deploy.add_argument("-fp", "--failure-handling-policy", dest="failure_policy",
                        choices=["ROLLBACK", "DO_NOTHING"], default=None)
    deploy.add_argument("--wait", action="store_true",
                        help="wait for the deployment to finish; exit 1 if it FAILED")
    deploy.add_argument("--timeout", type=float, default=1800.0,
                        help="with --wait: seconds to wait (default: 1800)")
    deploy.set_defaults(handler=run_deploy)


def _add_deployment(commands: argparse._SubParsersAction, root: argparse.ArgumentParser
                    ) -> None:
    parser = commands.add_parser("deployment", help="local deployments (create, status, list, "
                                 "cancel)",
                                 description="greengrass-cli's deployment commands.")
    sub = parser.add_subparsers(dest="deployment_command", metavar="DEPLOYMENT_COMMAND")
    _add_deploy(sub, root, "create")
    status = sub.add_parser("status", parents=[root], help="the status of one deployment",
                            description="Print '<id>: <status>' (and why it FAILED).")
    status.add_argument("-i", "--deploymentId", dest="deployment_id", required=True)
    status.set_defaults(handler=run_deployment_status)
    listing = sub.add_parser("list", parents=[root], help="every local deployment and its "
                             "status")
    listing.set_defaults(handler=run_deployment_list)
    cancel = sub.add_parser("cancel", parents=[root], help="cancel a queued or running "
                            "deployment", description="greengrass-cli's deployment cancel: a "
                            "QUEUED deployment never runs; one IN_PROGRESS stops where it is "
                            "(changes it applied stay); one waiting for its components' deferral "
                            "is abandoned.")
    cancel.add_argument("-i", "--deploymentId", dest="deployment_id", required=True)
    cancel.set_defaults(handler=run_deployment_cancel)
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)


def _add_component(commands: argparse._SubParsersAction, root: argparse.ArgumentParser
                   ) -> None:
    parser = commands.add_parser("component", help="deployed components (list, details, "
                                 "restart, stop)",
                                 description="greengrass-cli's component commands.")
    sub = parser.add_subparsers(dest="component_command", metavar="COMPONENT_COMMAND")
    listing = sub.add_parser("list", parents=[root], help="name, version, state and "
                             "configuration of every component")
    listing.set_defaults(handler=run_component_list)
    details = sub.add_parser("details", parents=[root], help="one component's version, state "
                             "and configuration")
    details.add_argument("-n", "--name", required=True)
    details.set_defaults(handler=run_component_details)
    for action, help_text in (("restart", "restart components"), ("stop", "stop components")):
        command = sub.add_parser(action, parents=[root], help=help_text)
        command.add_argument("-n", "--names", required=True,
                             help="component names, comma-separated")
        command.set_defaults(handler=run_component_action, action=action)
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)


def _add_pubsub(commands: argparse._SubParsersAction, root: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("pubsub", help="publish to or subscribe to local topics",
                                 description="greengrass-cli's pubsub commands (CLI >= 2.10).")
    sub = parser.add_subparsers(dest="pubsub_command", metavar="PUBSUB_COMMAND")
    pub = sub.add_parser("pub", parents=[root], help="publish a message to a local topic",
                         description="Publish MESSAGE (UTF-8 bytes, as greengrass-cli does) "
                                     "to TOPIC.")
    pub.add_argument("-t", "--topic", required=True)
    pub.add_argument("-m", "--message", required=True)
    pub.set_defaults(handler=run_pub)
    subscribe = sub.add_parser(
        "sub", parents=[root], help="print the messages of a local topic",
        description="Print each message on TOPIC (MQTT wildcards + and # allowed) until "
                    "Ctrl-C, --count messages or --timeout seconds; exit 1 if the runtime "
                    "stops meanwhile.")
    subscribe.add_argument("-t", "--topic", required=True)
    subscribe.add_argument("--count", type=int, default=None,
                           help="exit after this many messages (exit 1 if --timeout comes "
                                "first)")
    subscribe.add_argument("--timeout", type=float, default=None,
                           help="exit after this many seconds")
    subscribe.add_argument("--json", action="store_true",
                           help="one JSON object per message: {topic, message}")
    subscribe.set_defaults(handler=run_sub)
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)


def _add_logs(commands: argparse._SubParsersAction, root: argparse.ArgumentParser) -> None:
    logs = commands.add_parser(
        "logs", parents=[root], help="print the runtime's or a component's log",
        description="Print <root>/logs/greengrass.log, or <root>/logs/NAME.log. `ggic local "
                    "logs get` takes greengrass-cli's flags instead: -lf/--log-file, "
                    "-ld/--log-dir, -f/--filter (there -f filters), -fol/--follow.")
    logs.add_argument("name", nargs="?", default=None, metavar="NAME",
                      help="a component name (default: the runtime's greengrass.log)")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new lines until Ctrl-C")
    logs.add_argument("-n", "--lines", type=int, default=None,
                      help="only the last N lines")
    logs.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    logs.set_defaults(handler=run_logs_command)


def _add_iotcore(commands: argparse._SubParsersAction, root: argparse.ArgumentParser) -> None:
    iotcore = commands.add_parser(
        "iotcore", parents=[root], help="the messages components published to AWS IoT Core",
        description=f"Print the PublishToIoTCore calls the runtime recorded "
                    f"(<root>/logs/{IOT_CORE_LOG}); nothing is sent to AWS.")
    iotcore.add_argument("--json", action="store_true", help="print the JSON lines as stored")
    iotcore.set_defaults(handler=run_iotcore)
    add_iotcore_subcommands(iotcore, root)


def _add_stand_in(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("stand-in", help="write stand-ins for public components",
                                 description="Write local stand-ins for public components the "
                                             "runtime can't download.")
    sub = parser.add_subparsers(dest="stand_in_command", metavar="STAND_IN")
    modelstore = sub.add_parser(
        "modelstore", help="a stand-in variant.DLR.ImageClassification.ModelStore 2.1.x",
        description=(
            "Write a variant.DLR.ImageClassification.ModelStore 2.1.x component (recipe, and "
            "with --model the model as the unpacked DLR-resnet50-<arch>-cpu-"
            "ImageClassification artifact for this machine) in GDK's build layout. Give it "
            "to `ggic local start --stand-in DIR`."))
    modelstore.add_argument("--out", type=Path, required=True, help="folder to write")
    modelstore.add_argument("--model", type=Path, default=None,
                            help="a DLR model directory to carry (default: none; then set the "
                                 "classifier's ModelDir)")
    modelstore.add_argument("--version", default=None, help="component version (default: "
                            "2.1.0)")
    modelstore.add_argument("--arch", default=None, choices=["x86_64", "aarch64", "armv7l"],
                            help="the architecture the model is for (default: this machine's)")
    modelstore.set_defaults(handler=run_stand_in_modelstore)
    from .cloudwatch_stand_in import add_stand_in_parser  # issue 12
    add_stand_in_parser(sub)  # issue 12: `ggic local stand-in cloudwatch`
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)


