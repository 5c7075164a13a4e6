"""The technician's side without a network: what the bridge refuses before it connects anywhere."""
from __future__ import annotations

import pytest

from agent.errors import UsageError
from agent.viewer import BridgeConfig


def test_exactly_one_way_to_the_agent():
    with pytest.raises(UsageError, match="exactly one"):
        BridgeConfig("123456789", "pw")
    with pytest.raises(UsageError, match="exactly one"):
        BridgeConfig("123456789", "pw", relay=("127.0.0.1", 7400), direct=("127.0.0.1", 7401))


@pytest.mark.parametrize("listen", [("0.0.0.0", 5901), ("::", 5901)])
def test_plain_rfb_is_served_on_loopback_only(listen):
    with pytest.raises(UsageError, match="loopback"):
        BridgeConfig("123456789", "pw", relay=("127.0.0.1", 7400), listen=listen)


def test_the_password_never_shows_in_repr():
    config = BridgeConfig("123456789", "hunter2-secret", relay=("127.0.0.1", 7400))
    assert "hunter2-secret" not in repr(config)
    assert config.listen[0] in ("127.0.0.1", "::1", "localhost")
