"""One HOST:PORT parser, one loopback rule and one password reader for every command."""
from __future__ import annotations

import pytest

from agent.commands.options import read_password
from agent.errors import UsageError
from agent.models import AddressError, parse_address
from agent.net import require_loopback


def test_port_required_unless_defaulted():
    assert parse_address("relay.example:7400") == ("relay.example", 7400)
    assert parse_address("relay.example", 7400) == ("relay.example", 7400)
    with pytest.raises(AddressError, match="required"):
        parse_address("relay.example")


def test_port_zero_only_where_we_listen():
    assert parse_address("127.0.0.1:0", allow_port_zero=True) == ("127.0.0.1", 0)
    with pytest.raises(AddressError):
        parse_address("127.0.0.1:0")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_accepted(host):
    require_loopback(host, 5901)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::"])
def test_non_loopback_refused(host):
    with pytest.raises(UsageError, match="not a loopback address"):
        require_loopback(host, 5901)


def test_password_file_first_line_as_written(tmp_path, monkeypatch):
    monkeypatch.delenv("REJNET_PASSWORD", raising=False)
    pw = tmp_path / "pw"
    pw.write_text("s3cret word\r\nsecond line\n")
    assert read_password(str(pw)) == "s3cret word"
    pw.write_text("\n")
    with pytest.raises(UsageError, match="empty"):
        read_password(str(pw))


def test_password_from_environment_or_a_clear_error(monkeypatch):
    monkeypatch.setenv("REJNET_PASSWORD", "envpw")
    assert read_password(None) == "envpw"
    monkeypatch.delenv("REJNET_PASSWORD")
    monkeypatch.setattr("sys.stdin", None)
    with pytest.raises(UsageError, match="no password.*--no-auth"):
        read_password(None, hint=", or pass --no-auth")
