"""The one configuration store's own rules (the IPC view and deployments are tested through
the real SDK and real deployments in test_local_ipc_server_config and test_local_runtime)."""

from __future__ import annotations

import stat
from pathlib import Path

from ggic.local.config_store import ConfigStore, ConfigurationChange

APP = "com.example.App"


def test_a_deployment_keeps_an_update_made_while_it_was_planned(tmp_path: Path) -> None:
    store = ConfigStore.load(tmp_path / "config" / "configuration.json")
    store.create(APP, {"TopK": "5", "Threshold": "0.3"}, timestamp=10)
    change = ConfigurationChange(APP, defaults={"TopK": "5", "New": "d"},
                                 merge={"Threshold": "0.5"}, timestamp=20)
    planned = change.apply_to(store.trees()[APP]).to_dict()  # what planning sees
    store.update(APP, ["TopK"], "3")  # a component's UpdateConfiguration, meanwhile
    heard: list[tuple[str, ...]] = []
    store.watch(APP, (), lambda _name, path: heard.append(path))
    store.apply_deployment([change])
    assert planned == {"TopK": "5", "Threshold": "0.5", "New": "d"}
    assert store.to_dict(APP) == {"TopK": "3", "Threshold": "0.5", "New": "d"}
    assert sorted(heard) == [("New",), ("Threshold",)]
    reloaded = ConfigStore.load(tmp_path / "config" / "configuration.json")
    assert reloaded.to_dict(APP) == store.to_dict(APP)


def test_keys_keep_their_first_spelling(tmp_path: Path) -> None:
    store = ConfigStore()
    store.create(APP, {"Tuning": {"TopK": "5"}}, timestamp=10)
    store.update(APP, ["TUNING", "topk"], "3")
    assert store.to_dict(APP) == {"Tuning": {"TopK": "3"}}
    assert store.find(APP, ["tuning", "TOPK"]) == (("Tuning", "TopK"), "3")


def test_the_saved_store_is_private(tmp_path: Path) -> None:
    path = tmp_path / "config" / "configuration.json"
    store = ConfigStore.load(path)
    store.create(APP, {"Secret": "s3cr3t"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
