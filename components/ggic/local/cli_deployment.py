"""greengrass-cli's ``get-debug-password`` (CreateDebugPassword over IPC)."""

from __future__ import annotations

import argparse
from datetime import datetime

from .cli_commands import _call, _client_command, resolve_root


@_client_command
def run_get_debug_password(args: argparse.Namespace) -> int:
    response = _call(resolve_root(args.root), "create_debug_password")
    print(f"Username: {response.username}")
    print(f"Password: {response.password}")
    expiration = response.password_expiration
    if isinstance(expiration, datetime):
        expiration = expiration.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    print(f"Password expires at: {expiration}")
    print("Note: the local runtime has no local debug console (aws.greengrass."
          "LocalDebugConsole) to use this password with.")
    return 0
