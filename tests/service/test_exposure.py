"""Issue 21, least privilege on the service side: ``antispam serve`` listens on loopback unless
told otherwise and refuses a non-loopback address with keys off unless ``--allow-open``; the
access log shows the client's address from X-Forwarded-For only behind a trusted proxy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tornado.httputil import HTTPHeaders

from antispam.app import make_app
from antispam.cli import main
from antispam.config import ServeConfig, trusted_networks
from antispam.errors import UserError
from antispam.http.base import client_address
from antispam.runtime.exposure import check_exposure, is_loopback
from tests.helpers.fakes import FakeBackend
from tests.service.test_app import ApiTestCase


def test_default_host_is_loopback_and_open_addresses_need_keys_or_allow_open() -> None:
    assert ServeConfig().host == "127.0.0.1" and not ServeConfig().allow_open
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert is_loopback(host), host
        check_exposure(ServeConfig(host=host))
    for host in ("0.0.0.0", "", "::", "10.1.2.3", "no-such-host.invalid"):
        assert not is_loopback(host), host
        with pytest.raises(UserError, match="--allow-open"):
            check_exposure(ServeConfig(host=host))
        check_exposure(ServeConfig(host=host, keys_file="/etc/antispam/keys.tsv"))  # keys on: fine
        check_exposure(ServeConfig(host=host, allow_open=True))


def test_serve_refuses_before_binding(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTISPAM_KEYS_FILE", raising=False)
    monkeypatch.delenv("ANTISPAM_ALLOW_OPEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "refusing to listen on 0.0.0.0 with API keys off" in capsys.readouterr().err
    monkeypatch.setenv("ANTISPAM_HOST", "0.0.0.0")
    assert main(["serve", "--port", "0", "--trusted-proxy", "not-an-ip"]) == 2
    assert "--trusted-proxy" in capsys.readouterr().err


def test_client_address_only_from_trusted_proxies() -> None:
    trusted = trusted_networks("10.0.0.0/8, 192.168.1.5")

    def headers(**values: str) -> HTTPHeaders:
        h = HTTPHeaders()
        for name, value in values.items():
            h.add(name.replace("_", "-"), value)
        return h

    spoof = headers(X_Forwarded_For="203.0.113.9")
    assert client_address("198.51.100.7", spoof, trusted) == "198.51.100.7"  # not a proxy: ignored
    assert client_address("10.1.1.1", spoof, trusted) == "203.0.113.9"
    # The client prepends a lie; the proxies append what they saw: read from the right.
    chain = headers(X_Forwarded_For="1.2.3.4, 203.0.113.9, 192.168.1.5")
    assert client_address("10.1.1.1", chain, trusted) == "203.0.113.9"
    assert client_address("10.1.1.1", headers(X_Real_Ip="203.0.113.10"), trusted) == "203.0.113.10"
    assert client_address("10.1.1.1", headers(X_Forwarded_For="not-an-ip"), trusted) == "10.1.1.1"
    assert client_address("10.1.1.1", headers(), trusted) == "10.1.1.1"


class TrustedProxyLogTest(ApiTestCase):
    settings = {"trusted_proxy": "127.0.0.1"}

    def make_backend(self):
        return FakeBackend()

    def access_line(self, headers: dict[str, str]) -> str:
        with self.assertLogs("antispam.access", level=logging.INFO) as logs:
            self.fetch("/nope", headers=headers)  # a 404 is logged at INFO
        return logs.output[-1]

    def test_the_access_log_names_the_forwarded_client(self):
        self.assertIn("(203.0.113.9 key=", self.access_line({"X-Forwarded-For": "203.0.113.9"}))
        self.assertIn("(127.0.0.1 key=", self.access_line({}))


class UntrustedProxyLogTest(TrustedProxyLogTest):
    settings = {}

    def test_the_access_log_names_the_forwarded_client(self):
        self.assertIn("(127.0.0.1 key=", self.access_line({"X-Forwarded-For": "203.0.113.9"}))


def test_make_app_reads_the_setting(tmp_path: Path) -> None:
    app = make_app(ServeConfig(model_base=str(tmp_path), trusted_proxy="10.0.0.0/8"), FakeBackend())
    assert [str(n) for n in app.services.trusted_proxies] == ["10.0.0.0/8"]  # type: ignore[attr-defined]
