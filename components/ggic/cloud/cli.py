"""``ggic cloud ...``: publish, deploy and Neo model preparation from a workstation.

Exit codes: 0 done, 1 an AWS operation, the deployment or the compilation failed (or timed
out), 2 the command line or the local inputs are wrong (nothing was changed in AWS).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..gdk_build import BUILD_DIR, BuildError
from .aws import AwsClients, CloudError, Poller

if TYPE_CHECKING:
    from .neo import NeoTarget

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]


def make_clients(args: argparse.Namespace) -> AwsClients:
    """The AWS clients for a command (tests replace this with stubbed clients)."""
    return AwsClients(region_name=args.region, profile=args.profile)


def make_poller(timeout: float, interval: float) -> Poller:
    return Poller(timeout=timeout, interval=interval)


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _guarded(run: Handler) -> Handler:
    """Map the typed errors to exit codes and one readable line each."""
    from .deploy import DeploymentInputError
    from .model_component import ModelComponentError
    from .neo import NeoInputError
    from .publish import PublishError
    from .safe_tar import UnsafeArchiveError

    def handler(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except UnsafeArchiveError as exc:
            _error(f"refusing the archive: {exc}")
            return EXIT_FAILED
        except CloudError as exc:
            _error(str(exc))
            return EXIT_USAGE if exc.code == "MissingDependency" else EXIT_FAILED
        except (PublishError, DeploymentInputError, NeoInputError, ModelComponentError,
                BuildError, ValueError, OSError) as exc:
            _error(str(exc))
            return EXIT_USAGE

    return handler


def _aws_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("AWS")
    group.add_argument("--region", default=None,
                       help="AWS region (default: the profile's or $AWS_REGION)")
    group.add_argument("--profile", default=None,
                       help="named profile from ~/.aws/config (default: $AWS_PROFILE or the "
                            "default credentials chain)")
    return parent


def _wait_options(parser: argparse.ArgumentParser, timeout: float, interval: float) -> None:
    parser.add_argument("--timeout", type=float, default=timeout,
                        help=f"seconds to wait before giving up (default: {timeout:g})")
    parser.add_argument("--poll-interval", type=float, default=interval,
                        help=f"seconds between status calls (default: {interval:g})")


def add_cloud_parser(subparsers: argparse._SubParsersAction) -> None:
    cloud = subparsers.add_parser(
        "cloud",
        help="publish components, deploy them, compile models with SageMaker Neo (boto3)",
        description=(
            "Work with AWS from a workstation: publish the components of a greengrass-build "
            "folder like `gdk component publish`, create cloud deployments, and compile a "
            "PyTorch model with SageMaker Neo into a Greengrass model component. Needs boto3 "
            "(pip install 'ggic[cloud]') and AWS credentials. Exit codes: 0 done, 1 an AWS "
            "operation or the deployment/compilation failed, 2 wrong arguments or inputs."
        ),
    )
    cloud.set_defaults(handler=lambda _args: _print_help(cloud))
    commands = cloud.add_subparsers(dest="cloud_command", metavar="COMMAND")
    aws = _aws_options()
    _add_publish(commands, aws)
    _add_deploy(commands, aws)
    _add_neo_compile(commands, aws)
    _add_model_component(commands)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USAGE


# --- publish --------------------------------------------------------------------------------


def _add_publish(commands: argparse._SubParsersAction, aws: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "publish", parents=[aws],
        help="publish built components like `gdk component publish`",
        description=(
            "Publish the components of a greengrass-build folder (from `ggic build`, "
            "`gdk component build` or `ggic cloud neo-compile`) as GDK does: find the account "
            "(STS), use the bucket <prefix>-<region>-<account> (created if missing), upload "
            "artifacts/<name>/<version>/* to s3://<bucket>/<name>/<version>/, point the "
            "recipe's s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/ URIs at them and call "
            "CreateComponentVersion with the recipe (YAML or JSON as built). A version of "
            "NEXT_PATCH becomes the patch after the highest version in the account (1.0.0 for "
            "a new component). The recipe sent is kept in <build-dir>/published-recipes/. "
            "Without --bucket-prefix/--region, the publish settings of the gdk-config.json "
            "beside the build folder are used."
        ),
    )
    parser.add_argument("--build-dir", type=Path, default=Path(BUILD_DIR),
                        help=f"the greengrass-build folder (default: ./{BUILD_DIR})")
    parser.add_argument("--component", action="append", default=[], metavar="NAME",
                        help="publish only this component (repeatable; default: all)")
    bucket = parser.add_mutually_exclusive_group()
    bucket.add_argument("--bucket-prefix", default=None,
                        help="bucket prefix: the bucket is <prefix>-<region>-<account> "
                             "(GDK's publish.bucket)")
    bucket.add_argument("--bucket", default=None,
                        help="use this exact bucket name instead (GDK's --bucket)")
    parser.add_argument("--no-create-bucket", action="store_true",
                        help="fail instead of creating a missing bucket")
    parser.add_argument("--wait", action="store_true",
                        help="wait until Greengrass has checked the artifacts (DEPLOYABLE)")
    _wait_options(parser, 300, 5)
    parser.set_defaults(handler=_guarded(run_publish))


def run_publish(args: argparse.Namespace) -> int:
    from .publish import publish_build, publish_settings_from_gdk_config

    if not args.build_dir.is_dir():
        _error(f"{args.build_dir} does not exist: run `ggic build` first")
        return EXIT_USAGE
    defaults = publish_settings_from_gdk_config(args.build_dir)
    prefix = args.bucket_prefix or (None if args.bucket else defaults.get("bucket"))
    if not prefix and not args.bucket:
        _error("give --bucket-prefix (or --bucket); no gdk-config.json publish.bucket found "
               f"beside {args.build_dir}")
        return EXIT_USAGE
    if args.region is None and defaults.get("region"):
        args.region = defaults["region"]
    clients = make_clients(args)
    poller = make_poller(args.timeout, args.poll_interval) if args.wait else None
    published = publish_build(clients, args.build_dir, bucket_prefix=prefix, bucket=args.bucket,
                              components=args.component or None,
                              create_bucket=not args.no_create_bucket, wait=poller)
    for item in published:
        print(f"published {item.name} {item.version} ({item.state})")
        print(f"  arn:    {item.arn}")
        for uri in item.uploaded:
            print(f"  artifact: {uri}")
        print(f"  recipe: {item.recipe_path}")
    return EXIT_OK


# --- deploy ---------------------------------------------------------------------------------


def _add_deploy(commands: argparse._SubParsersAction, aws: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "deploy", parents=[aws],
        help="create a cloud deployment for a core device or a thing group",
        description=(
            "CreateDeployment for a thing or thing group with the given component versions "
            "and configuration updates in greengrass-cli's --update-config shape "
            '({"<component>": {"MERGE": {...}, "RESET": ["/Key"]}}). A deployment REPLACES '
            "the target's previous one: components it does not list are removed from the "
            "devices, unless --keep-existing starts from the target's latest deployment. "
            "--wait follows a core device until it has applied the deployment "
            "(ListEffectiveDeployments) and reports its health (GetCoreDevice)."
        ),
    )
    parser.add_argument("--target", required=True,
                        help="thing/NAME, thinggroup/NAME, a core device's thing name, or an "
                             "IoT thing/thing-group ARN")
    parser.add_argument("--component", "--merge", dest="components", action="append",
                        default=[], metavar="NAME=VERSION",
                        help="a component version to deploy (repeatable; greengrass-cli's "
                             "--merge form)")
    parser.add_argument("--update-config", default=None, metavar="JSON|FILE",
                        help='configuration updates: {"<component>": {"MERGE": {...}, '
                             '"RESET": ["/Key"]}} as a JSON string or a file')
    parser.add_argument("--deployment-name", default=None, help="the deployment's name")
    parser.add_argument("--keep-existing", action="store_true",
                        help="keep the components (and policies) of the target's latest "
                             "deployment, changing only those given")
    parser.add_argument("--wait", action="store_true",
                        help="wait for the core device to apply it (needs a thing target or "
                             "--wait-thing)")
    parser.add_argument("--wait-thing", default=None, metavar="THING",
                        help="core device to follow when the target is a thing group")
    _wait_options(parser, 900, 10)
    parser.set_defaults(handler=_guarded(run_deploy))


def run_deploy(args: argparse.Namespace) -> int:
    from .deploy import (
        create_deployment,
        describe_outcome,
        parse_component_versions,
        parse_update_config,
        thing_name_of,
        wait_for_deployment,
    )

    versions = parse_component_versions(args.components)
    updates = parse_update_config(args.update_config) if args.update_config else None
    if not versions and not args.keep_existing:
        _error("give at least one --component NAME=VERSION (or --keep-existing)")
        return EXIT_USAGE
    group_target = args.target.startswith("thinggroup/") or ":thinggroup/" in args.target
    if args.wait and group_target and not args.wait_thing:
        _error("the target is a thing group: give --wait-thing THING to follow one device")
        return EXIT_USAGE
    clients = make_clients(args)
    ref = create_deployment(clients, args.target, versions, updates,
                            deployment_name=args.deployment_name,
                            keep_existing=args.keep_existing)
    print(f"deployment {ref.deployment_id} created for {ref.target_arn}")
    if not args.wait:
        return EXIT_OK
    thing = args.wait_thing or thing_name_of(ref.target_arn) or ""
    outcome = wait_for_deployment(clients, thing, ref.deployment_id,
                                  make_poller(args.timeout, args.poll_interval))
    print(describe_outcome(outcome))
    return EXIT_OK if outcome.succeeded else EXIT_FAILED


# --- Neo ------------------------------------------------------------------------------------


def _target_options(parser: argparse.ArgumentParser) -> None:
    from .neo import ARCH_PLATFORMS

    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--arch", choices=sorted(ARCH_PLATFORMS),
                        help="TargetPlatform Os LINUX with this CPU architecture (no "
                             "accelerator): X86_64 (amd64), ARM64 (aarch64), ARM_EABIHF "
                             "(32-bit armv7l)")
    target.add_argument("--target-device", default=None,
                        help="a Neo TargetDevice instead (e.g. jetson_nano, rasp3b)")


def _component_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--component-name", required=True,
                        help="name of the model component to write (e.g. "
                             "com.example.VGG16Model)")
    parser.add_argument("--component-version", default="1.0.0",
                        help="its version (default: 1.0.0)")
    parser.add_argument("--labels", type=Path, default=None,
                        help="labels file shipped beside the model (e.g. "
                             "imagenet_class_index.json); checked against the model's outputs")
    parser.add_argument("--greengrass-root", default="/greengrass/v2",
                        help="the nucleus root on the device, for the printed ModelDir "
                             "(default: /greengrass/v2)")


def _add_neo_compile(commands: argparse._SubParsersAction,
                     aws: argparse.ArgumentParser) -> None:
    from .neo import DEFAULT_FRAMEWORK_VERSION, DEFAULT_MAX_RUNTIME_S, DEFAULT_PREFIX

    parser = commands.add_parser(
        "neo-compile", parents=[aws],
        help="compile a PyTorch model with SageMaker Neo into a model component",
        description=(
            "Compile a PyTorch model with SageMaker Neo (no Edge Manager: it was discontinued "
            "on 2024-04-26) and package it as a Greengrass model component. The model is a "
            ".tar.gz holding one TorchScript model.pth (torch.jit.save(torch.jit.trace("
            "model.eval(), torch.rand(1, 3, 224, 224)), 'model.pth'); tar czf model.tar.gz "
            "model.pth). It is uploaded to s3://BUCKET/PREFIX/JOB/input/, compiled by "
            "CreateCompilationJob into s3://BUCKET/PREFIX/JOB/output/, polled until done, "
            "downloaded into --out, unpacked safely into --out/model (replaced), checked as a "
            "DLR model and written as a component into --out/greengrass-build (publish it with "
            "`ggic cloud publish --build-dir OUT/greengrass-build`). The classifier "
            "configuration to use is printed and written to OUT/classifier-config.json. The "
            "role must trust sagemaker.amazonaws.com and read/write the bucket; the caller "
            "needs sagemaker:CreateCompilationJob/DescribeCompilationJob and iam:PassRole."
        ),
    )
    parser.add_argument("--model", type=Path, required=True,
                        help="the model archive (model.tar.gz holding a TorchScript model.pth)")
    parser.add_argument("--bucket", required=True,
                        help="S3 bucket (in --region) for the input and the compiled model")
    parser.add_argument("--create-bucket", action="store_true",
                        help="create the bucket if it does not exist")
    parser.add_argument("--role-arn", required=True,
                        help="IAM role SageMaker assumes for the job")
    _target_options(parser)
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: compiled archive, model/, greengrass-build/, "
                             "classifier-config.json")
    parser.add_argument("--framework-version", default=DEFAULT_FRAMEWORK_VERSION,
                        help=f"PyTorch version of the model (default: "
                             f"{DEFAULT_FRAMEWORK_VERSION}; Neo's edge targets list PyTorch "
                             "1.7 and 1.8)")
    parser.add_argument("--input-name", default="input0",
                        help="model input name for DataInputConfig (default: input0)")
    parser.add_argument("--input-shape", default="1,3,224,224",
                        help="NCHW input shape for DataInputConfig (default: 1,3,224,224)")
    parser.add_argument("--compiler-options", default=None, metavar="JSON",
                        help='CompilerOptions, e.g. \'{"mcpu": "skylake-avx512"}\' (default for '
                             'ARM_EABIHF: {"mattr": ["+neon"]})')
    parser.add_argument("--job-name", default=None,
                        help="compilation job name (default: ggic-neo-<target>-<UTC time>)")
    parser.add_argument("--s3-prefix", default=DEFAULT_PREFIX,
                        help=f"key prefix in the bucket (default: {DEFAULT_PREFIX})")
    parser.add_argument("--max-runtime", type=int, default=DEFAULT_MAX_RUNTIME_S,
                        help=f"StoppingCondition MaxRuntimeInSeconds (default: "
                             f"{DEFAULT_MAX_RUNTIME_S})")
    _wait_options(parser, 1800, 30)
    _component_options(parser)
    parser.set_defaults(handler=_guarded(run_neo_compile))


def _target_from(args: argparse.Namespace,
                 compiler_options: str | None = None) -> NeoTarget:
    from .neo import NeoInputError, NeoTarget

    options = None
    if compiler_options:
        try:
            options = json.loads(compiler_options)
        except ValueError as exc:
            raise NeoInputError(f"--compiler-options is not JSON: {exc}") from None
        if not isinstance(options, dict):
            raise NeoInputError("--compiler-options must be a JSON object")
    return NeoTarget(arch=args.arch, device=args.target_device, compiler_options=options)


def run_neo_compile(args: argparse.Namespace) -> int:
    from .model_component import build_model_component, check_component, classifier_instructions
    from .neo import compile_model, parse_shape

    target = _target_from(args, args.compiler_options)
    check_component(args.component_name, args.component_version)
    if args.labels is not None and not args.labels.is_file():
        _error(f"labels file {args.labels} does not exist")
        return EXIT_USAGE
    clients = make_clients(args)
    args.out.mkdir(parents=True, exist_ok=True)
    result = compile_model(
        clients, args.model, bucket=args.bucket, role_arn=args.role_arn, target=target,
        download_dir=args.out, poller=make_poller(args.timeout, args.poll_interval),
        job_name=args.job_name, prefix=args.s3_prefix,
        framework_version=args.framework_version, input_name=args.input_name,
        input_shape=parse_shape(args.input_shape), max_runtime_s=args.max_runtime,
        create_bucket=args.create_bucket)
    print(f"compilation job {result.job_name} COMPLETED: {result.compiled_uri}")
    print(f"downloaded {result.archive}")
    component = build_model_component(
        result.archive, args.out, name=args.component_name, version=args.component_version,
        platform=target.platform, labels=args.labels, source=f"job {result.job_name}",
        greengrass_root=args.greengrass_root)
    print()
    print(classifier_instructions(component, args.out, args.greengrass_root))
    return EXIT_OK


def _add_model_component(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "model-component",
        help="package an already compiled Neo model as a model component (offline)",
        description=(
            "Package a compiled model archive (a Neo output model-*.tar.gz you already "
            "downloaded) as a Greengrass model component, with no AWS call: unpack it safely "
            "into OUT/model (replaced), check it is a DLR model, write OUT/greengrass-build "
            "(recipe + neo-model.zip) and OUT/classifier-config.json, and print the classifier "
            "configuration to use."
        ),
    )
    parser.add_argument("--compiled", type=Path, required=True,
                        help="the compiled archive (model-<target>.tar.gz)")
    _target_options(parser)
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: model/, greengrass-build/, classifier-config.json")
    _component_options(parser)
    parser.set_defaults(handler=_guarded(run_model_component))


def run_model_component(args: argparse.Namespace) -> int:
    from .model_component import build_model_component, classifier_instructions

    if not args.compiled.is_file():
        _error(f"{args.compiled} does not exist")
        return EXIT_USAGE
    target = _target_from(args)
    component = build_model_component(
        args.compiled, args.out, name=args.component_name, version=args.component_version,
        platform=target.platform, labels=args.labels, source=args.compiled.name,
        greengrass_root=args.greengrass_root)
    print(classifier_instructions(component, args.out, args.greengrass_root))
    return EXIT_OK
