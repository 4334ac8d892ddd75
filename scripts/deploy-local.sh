#!/bin/sh
# Deploy the ggic components on this Greengrass core device with greengrass-cli (no cloud):
# build them (`ggic build`), `greengrass-cli deployment create --recipeDir --artifactDir
# --merge ...`, follow `deployment status -i ID` until it ends, then `component list`.
#
# usage: scripts/deploy-local.sh [options]
#   --build-dir DIR          greengrass-build folder (default: <repo>/greengrass-build)
#   --no-build               deploy the build folder as it is (default: run `ggic build` first)
#   --component NAME=VERSION component to merge, repeatable (default: the classifier and the
#                            requester at the versions of their built recipes)
#   --update-config FILE|JSON
#                            configuration update for greengrass-cli, e.g.
#                            '{"com.custom.ImageClassifier":{"MERGE":{"TopK":"3"}}}' or the
#                            classifier-config.json `ggic cloud neo-compile` writes
#   --timeout SECONDS        how long to follow the deployment (default: 600)
#   -h, --help               this text
# environment:
#   GREENGRASS_ROOT  the nucleus root (default: /greengrass/v2)
#   GREENGRASS_CLI   greengrass-cli (default: $GREENGRASS_ROOT/bin/greengrass-cli; it comes
#                    with the aws.greengrass.Cli component)
#   GGIC             the ggic command that builds (default: <repo>/.venv/bin/ggic, else ggic)
#   SUDO             prefix for greengrass-cli (default: sudo, nothing when run as root;
#                    set it empty to run greengrass-cli directly)
#   POLL_INTERVAL    seconds between status checks (default: 5)
# exit status: 0 deployed (SUCCEEDED), 1 the deployment failed or timed out (or a command
# failed), 2 wrong usage or greengrass-cli missing.
set -eu
set -f  # no globbing: NAME=VERSION lists are split on spaces only

repo=$(cd "$(dirname "$0")/.." && pwd)
root=${GREENGRASS_ROOT:-/greengrass/v2}
cli=${GREENGRASS_CLI:-$root/bin/greengrass-cli}
poll=${POLL_INTERVAL:-5}
if [ -z "${SUDO+set}" ]; then
    if [ "$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi
fi
build_dir=$repo/greengrass-build
build=yes
components=""
update_config=""
timeout=600

usage() {
    sed -n '2,/^set -eu$/{/^set -eu$/d;s/^# \{0,1\}//;p;}' "$0"
}

fail_usage() {
    echo "deploy-local.sh: $1" >&2
    echo "run with --help for the options" >&2
    exit 2
}

need_value() {
    [ "$#" -ge 2 ] && [ -n "$2" ] || fail_usage "$1 needs a value"
}

while [ "$#" -gt 0 ]; do
    case $1 in
        --build-dir) need_value "$@"; build_dir=$2; shift 2 ;;
        --no-build) build=no; shift ;;
        --component)
            need_value "$@"
            case $2 in
                ?*=?*) components="$components $2" ;;
                *) fail_usage "--component takes NAME=VERSION, not '$2'" ;;
            esac
            shift 2 ;;
        --update-config) need_value "$@"; update_config=$2; shift 2 ;;
        --timeout)
            need_value "$@"
            case $2 in
                *[!0-9]*) fail_usage "--timeout takes whole seconds, not '$2'" ;;
            esac
            timeout=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) fail_usage "unknown option '$1'" ;;
    esac
done

run_cli() {
    # greengrass-cli, through sudo unless SUDO is empty.
    if [ -n "$SUDO" ]; then $SUDO "$cli" "$@"; else "$cli" "$@"; fi
}

if [ ! -x "$cli" ]; then
    echo "deploy-local.sh: no greengrass-cli at $cli: deploy the aws.greengrass.Cli component" \
         "to this device, or set GREENGRASS_CLI / GREENGRASS_ROOT" >&2
    exit 2
fi

# 1. Build.
if [ "$build" = yes ]; then
    ggic=${GGIC:-}
    if [ -z "$ggic" ]; then
        if [ -x "$repo/.venv/bin/ggic" ]; then ggic=$repo/.venv/bin/ggic; else ggic=ggic; fi
    fi
    echo "building into $build_dir"
    "$ggic" build --project-dir "$repo" --out "$build_dir"
fi
if [ ! -d "$build_dir/recipes" ] || [ ! -d "$build_dir/artifacts" ]; then
    fail_usage "$build_dir has no recipes/ and artifacts/: build first (drop --no-build)"
fi
build_dir=$(cd "$build_dir" && pwd)

# 2. What to merge: the built versions of both components unless given.
built_version() {
    # ComponentVersion of a built YAML recipe (as `ggic build`/GDK write it), else 1.0.0.
    version=$(sed -n "s/^ComponentVersion: *['\"]\{0,1\}\([^'\"]*\)['\"]\{0,1\} *$/\1/p" \
        "$build_dir/recipes/$1.yaml" 2>/dev/null | head -n 1)
    echo "${version:-1.0.0}"
}
if [ -z "$components" ]; then
    for name in com.custom.ImageClassifier com.custom.requester; do
        components="$components $name=$(built_version "$name")"
    done
fi

set -- deployment create --recipeDir "$build_dir/recipes" --artifactDir "$build_dir/artifacts"
for component in $components; do
    set -- "$@" --merge "$component"
done
if [ -n "$update_config" ]; then
    if [ -f "$update_config" ]; then
        # an absolute path: greengrass-cli may run elsewhere (sudo)
        update_config=$(cd "$(dirname "$update_config")" && pwd)/$(basename "$update_config")
    fi
    set -- "$@" --update-config "$update_config"
fi

# 3. Create the deployment.
echo "greengrass-cli $*"
if ! output=$(run_cli "$@" 2>&1); then
    printf '%s\n' "$output" >&2
    echo "deploy-local.sh: greengrass-cli deployment create failed" >&2
    exit 1
fi
printf '%s\n' "$output"
deployment_id=$(printf '%s\n' "$output" | sed -n 's/.*Deployment Id: *\([A-Za-z0-9-]*\).*/\1/p' \
    | head -n 1)
if [ -z "$deployment_id" ]; then
    echo "deploy-local.sh: no deployment id in greengrass-cli's answer" >&2
    exit 1
fi

# 4. Follow it.
deadline=$(( $(date +%s) + timeout ))
while :; do
    if ! status_output=$(run_cli deployment status -i "$deployment_id" 2>&1); then
        printf '%s\n' "$status_output" >&2
        echo "deploy-local.sh: greengrass-cli deployment status failed" >&2
        exit 1
    fi
    status=$(printf '%s\n' "$status_output" \
        | sed -n "s/^$deployment_id: *\([A-Z_]*\).*/\1/p" | head -n 1)
    case $status in
        SUCCEEDED)
            echo "deployment $deployment_id SUCCEEDED"
            break ;;
        FAILED|CANCELED|REJECTED)
            printf '%s\n' "$status_output" >&2
            echo "deployment $deployment_id $status: see $root/logs/greengrass.log and" \
                 "$root/logs/<component>.log" >&2
            exit 1 ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "deployment $deployment_id is still ${status:-unknown} after ${timeout}s:" \
             "follow it with greengrass-cli deployment status -i $deployment_id" >&2
        exit 1
    fi
    echo "deployment $deployment_id: ${status:-unknown}"
    sleep "$poll"
done

# 5. What runs now.
run_cli component list
