"""docs/operations.md names every broker property and topic config the server accepts."""

from __future__ import annotations

from pathlib import Path

from broker.settings import _INTS, BrokerSettings
from hotlog.config import TOPIC_CONFIGS

OPERATIONS = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
SPECIAL_PROPERTIES = ("auto.create.topics.enable", "advertised.listeners", "remote.log.chunk.cache.dir")


def test_every_broker_property_is_documented() -> None:
    for name in (*_INTS, *SPECIAL_PROPERTIES):
        BrokerSettings.parse({name: str(_INTS[name][1]) if name in _INTS else "true"})  # the server takes it
        assert f"`{name}`" in OPERATIONS, name


def test_every_topic_config_is_documented_with_its_broker_name() -> None:
    for name, definition in TOPIC_CONFIGS.items():
        row = next((line for line in OPERATIONS.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, name
        assert f"`{definition.broker_name}`" in row, name
