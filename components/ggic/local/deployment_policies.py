"""What a deployment asks the running components before it changes them: configuration
validation (``config_validation``), then the component update policy (``component_updates``).

The nucleus's DeploymentConfigMerger validates first (a REJECTED configuration fails the
deployment with nothing changed), then waits for a "disruptable" moment. A local deployment on
the nucleus skips the update notification (DeploymentDocumentConverter sets
SKIP_NOTIFY_COMPONENTS for greengrass-cli deployments); ``ggic local`` notifies by default, as a
cloud deployment does (NOTIFY_COMPONENTS, 60 s), so that a component's deferral can be tested
here; ``RuntimeSettings.notify_components=False`` gives the nucleus's local behaviour.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .component_updates import DEFAULT_UPDATE_TIMEOUT_S
from .config_store import ConfigStore
from .config_validation import DEFAULT_VALIDATION_TIMEOUT_S
from .deployment import DeploymentPlan
from .ipc_nucleus import LocalNucleus
from .lifecycle_states import State

#: States in which a component is disrupted by an update (it has processes or is starting).
ACTIVE_STATES = frozenset({State.INSTALLED, State.STARTING, State.RUNNING, State.STOPPING,
                           State.ERRORED})


def proposed_configurations(plan: DeploymentPlan, deployed: Mapping[str, str],
                            config: ConfigStore) -> dict[str, dict[str, Any]]:
    """The components the nucleus asks to validate: deployed, same version, and whose
    configuration the deployment changes (DynamicComponentConfigurationValidator)."""
    proposals = {}
    for planned in plan.components:
        if planned.builtin or deployed.get(planned.name) != planned.version:
            continue
        proposed = dict(planned.configuration)
        if proposed != config.to_dict(planned.name):
            proposals[planned.name] = proposed
    return proposals


def disrupts(plan: DeploymentPlan, states: Mapping[str, State], deployed: Mapping[str, str],
             config: ConfigStore) -> bool:
    """Does the deployment stop, restart, remove or reconfigure an active component?"""
    active = {name for name, state in states.items() if state in ACTIVE_STATES}
    if any(name in active for name in plan.removed):
        return True
    reconfigured = proposed_configurations(plan, deployed, config)
    return any(planned.name in active and (planned.change != "unchanged"
                                           or planned.name in reconfigured)
               for planned in plan.components)


@dataclass(frozen=True)
class DeploymentPolicies:
    """The runtime's ``RuntimeSettings.policies``."""

    notify_components: bool = True
    """Send SubscribeToComponentUpdates events before a deployment disrupts components (a
    cloud deployment's NOTIFY_COMPONENTS; False: a greengrass-cli deployment's SKIP)."""
    component_update_timeout: float = DEFAULT_UPDATE_TIMEOUT_S
    """How long each round waits for the subscribers' answers (componentUpdatePolicy.timeout)."""
    validation_timeout: float = DEFAULT_VALIDATION_TIMEOUT_S
    """How long configuration validation waits (configurationValidationPolicy.timeout)."""



def ask_components(nucleus: LocalNucleus, plan: DeploymentPlan, deployment_id: str,
                   deployed: Mapping[str, str], states: Mapping[str, State],
                   settings: DeploymentPolicies, closing: threading.Event) -> str | None:
    """Validate, then wait for a disruptable moment; the failure message, or None to go on."""
    failure = nucleus.validation.validate(
        deployment_id, proposed_configurations(plan, deployed, nucleus.config),
        settings.validation_timeout)
    if failure is not None:
        return failure
    if settings.notify_components and disrupts(plan, states, deployed, nucleus.config):
        nucleus.component_updates.wait_until_disruptable(
            deployment_id, settings.component_update_timeout, closing)
    return None
