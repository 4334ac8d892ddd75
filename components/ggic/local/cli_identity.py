"""The identity `ggic local`'s commands connect with: the greengrass-cli component's name and
the IPC permissions its commands need (pubsub pub/sub, iotcore pub/sub)."""

from __future__ import annotations

__all__ = ["CLI_ACCESS_CONTROL", "CLI_COMPONENT"]

CLI_COMPONENT = "aws.greengrass.Cli"
#: The greengrass-cli's own IPC permissions: local pub/sub on any topic (``pubsub pub/sub``).
CLI_ACCESS_CONTROL = {
    "aws.greengrass.ipc.pubsub": {
        f"{CLI_COMPONENT}:pubsub:1": {
            "policyDescription": "greengrass-cli pubsub pub/sub",
            "operations": ["aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"],
            "resources": ["*"],
        }
    },
    "aws.greengrass.ipc.mqttproxy": {  # iotcore pub/sub (the stand-in for AWS IoT Core)
        f"{CLI_COMPONENT}:mqttproxy:1": {
            "policyDescription": "greengrass-cli iotcore pub/sub",
            "operations": ["aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"],
            "resources": ["*"],
        }
    },
}
