"""Forged proxy headers: who the client is, as an attacker in front of (or behind) a proxy sees it.

`client_ip` is the one place that believes `X-Forwarded-For`, and only from `TRUSTED_PROXIES`;
the servers run with their own proxy handling off (see app/worker.py and the Makefile), which
the template's tests check with the real commands.
"""

from ipaddress import ip_network

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.models import AuditEvent, DeviceSession, User
from app.utils.client_ip import MAX_HOPS, client_ip
from tests.helpers import BROWSER, PASSWORD, make_settings

PROXY = "10.0.0.2"
TRUSTED = [ip_network("10.0.0.0/8"), ip_network("fd00::/8")]
MAX_STORED = 45  # the width of every IP column


def via_proxy(forwarded: str | None) -> str | None:
    return client_ip(PROXY, forwarded, TRUSTED)


class TestParsingFromATrustedProxy:
    def test_the_rightmost_untrusted_hop_is_the_client(self) -> None:
        assert via_proxy("203.0.113.66, 198.51.100.7, 10.0.0.9") == "198.51.100.7"

    def test_a_forged_leftmost_hop_is_never_the_client(self) -> None:
        assert via_proxy("1.1.1.1, 203.0.113.66") == "203.0.113.66"

    @pytest.mark.parametrize(
        "forwarded",
        [
            "hello-not-an-ip",
            "1" * 200,
            "203.0.113.7:443",
            "[2001:db8::1]",
            "203.0.113.07",
            "203.0.113.7 garbage",
            "unknown",
            "for=203.0.113.7",
            "١٢٣.1.1.1",  # Arabic-Indic digits: not an address anywhere else
            "203.0.113.7\x00",
            "203.0.113.7,",  # the hop our proxy wrote is empty
        ],
    )
    def test_a_value_that_does_not_parse_falls_back_to_the_proxy(self, forwarded: str) -> None:
        assert via_proxy(forwarded) == PROXY

    @pytest.mark.parametrize("zone", ["eth0", "a" * 300])
    def test_an_ipv6_zone_id_is_refused(self, zone: str) -> None:
        """A zone names an interface of the proxy's host; to us it is only unbounded text."""
        assert via_proxy(f"fe80::1%{zone}") == PROXY

    @pytest.mark.parametrize(
        "mapped", ["::ffff:203.0.113.9", "::FFFF:cb00:7109", "0:0:0:0:0:ffff:203.0.113.9"]
    )
    def test_an_ipv4_mapped_address_is_the_ipv4_address(self, mapped: str) -> None:
        """One client, one spelling: the same rate-limit key however it arrives."""
        assert via_proxy(mapped) == "203.0.113.9"

    def test_ipv6_is_stored_in_its_short_lower_case_form(self) -> None:
        expanded = "2001:0DB8:0000:0000:0000:0000:0000:0001"
        assert via_proxy(expanded) == "2001:db8::1"

    def test_the_longest_valid_spelling_still_fits_the_columns(self) -> None:
        longest = "0000:0000:0000:0000:0000:ffff:255.255.255.255"
        assert len(longest) == MAX_STORED
        assert via_proxy(longest) == "255.255.255.255"

    def test_a_mapped_peer_is_matched_against_ipv4_proxies(self) -> None:
        """A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d."""
        assert client_ip("::ffff:10.0.0.2", "203.0.113.5", TRUSTED) == "203.0.113.5"

    def test_a_peer_zone_id_is_dropped(self) -> None:
        assert client_ip("fe80::1%eth0", None, TRUSTED) == "fe80::1"

    def test_several_header_lines_count_as_one_list(self) -> None:
        """Proxies that add a header line instead of appending leave the client's line first."""
        assert via_proxy("198.51.100.1,203.0.113.2") == "203.0.113.2"

    def test_a_chain_of_trusted_hops_longer_than_examined_falls_back_to_the_proxy(self) -> None:
        chain = ", ".join(["203.0.113.1"] + [PROXY] * (MAX_HOPS + 5))
        assert via_proxy(chain) == PROXY

    def test_thousands_of_forged_hops_left_of_the_client_change_nothing(self) -> None:
        chain = ", ".join(["hello"] * 5000 + ["198.51.100.3", PROXY])
        assert via_proxy(chain) == "198.51.100.3"

    def test_only_trusted_hops_name_the_leftmost(self) -> None:
        assert via_proxy("10.1.1.1, 10.0.0.9") == "10.1.1.1"

    @pytest.mark.parametrize("forwarded", [None, "", " ", ","])
    def test_no_usable_header_is_the_proxy(self, forwarded: str | None) -> None:
        assert via_proxy(forwarded) == PROXY

    @pytest.mark.parametrize(
        "forwarded",
        ["1" * 300, "fe80::1%" + "z" * 300, ", ".join(["::ffff:1.2.3.4"] * 50), "a" * 10_000],
    )
    def test_whatever_is_forwarded_fits_the_columns(self, forwarded: str) -> None:
        ip = via_proxy(forwarded)
        assert ip is not None
        assert len(ip) <= MAX_STORED


class TestUntrustedPeer:
    @pytest.mark.parametrize("forwarded", ["203.0.113.7", "10.0.0.5", "hello-not-an-ip"])
    def test_its_header_is_ignored(self, forwarded: str) -> None:
        assert client_ip("198.51.100.20", forwarded, TRUSTED) == "198.51.100.20"

    def test_with_no_trusted_proxies_loopback_is_not_a_proxy(self) -> None:
        assert client_ip("127.0.0.1", "203.0.113.7", []) == "127.0.0.1"


async def sign_in(http: AsyncClient, headers: list[tuple[str, str]]) -> Response:
    return await http.post(
        "/api/v1/auth/login",
        json={"email": "alice@example.com", "password": PASSWORD},
        headers=headers,
    )


class TestThroughATrustedProxy:
    """The ASGI transport's peer is 127.0.0.1, here a trusted proxy."""

    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(trusted_proxies=["127.0.0.1/32"])

    async def test_a_300_character_forwarded_value_signs_in_from_the_proxy(
        self, client: AsyncClient, alice: User, db: AsyncSession
    ) -> None:
        """It parses as an address (a zone id may be any text), but it is not one we can store."""
        forwarded = "fe80::1%" + "z" * 292
        assert len(forwarded) == 300
        response = await sign_in(client, [("X-Forwarded-For", forwarded)])
        assert response.status_code == 200, response.text
        session = (await db.exec(select(DeviceSession))).one()
        assert (session.ip_address, session.last_ip_address) == ("127.0.0.1", "127.0.0.1")

    async def test_a_failed_sign_in_with_a_zone_id_is_audited_from_the_proxy(
        self, client: AsyncClient, alice: User, db: AsyncSession
    ) -> None:
        response = await client.post(
            "/api/v1/auth/login",
            json={"email": "alice@example.com", "password": "not the password at all"},
            headers={"X-Forwarded-For": "fe80::1%" + "x" * 300},
        )
        assert response.status_code == 401
        ips = {event.ip_address for event in (await db.exec(select(AuditEvent))).all()}
        assert ips == {"127.0.0.1"}

    async def test_the_client_cannot_hide_behind_an_earlier_header_line(
        self, client: AsyncClient, alice: User, db: AsyncSession
    ) -> None:
        response = await sign_in(
            client, [("X-Forwarded-For", "203.0.113.66"), ("X-Forwarded-For", "198.51.100.4")]
        )
        assert response.status_code == 200, response.text
        session = (await db.exec(select(DeviceSession))).one()
        assert session.ip_address == "198.51.100.4"

    async def test_x_real_ip_and_forwarded_are_not_read(
        self, client: AsyncClient, alice: User, db: AsyncSession
    ) -> None:
        response = await sign_in(
            client, [("X-Real-IP", "203.0.113.50"), ("Forwarded", "for=203.0.113.51")]
        )
        assert response.status_code == 200, response.text
        session = (await db.exec(select(DeviceSession))).one()
        assert session.ip_address == "127.0.0.1"


class TestUntrustedPeerThroughTheApp:
    async def test_a_forged_header_from_an_unlisted_peer_is_ignored(
        self, app: FastAPI, alice: User, db: AsyncSession
    ) -> None:
        async with AsyncClient(
            transport=ASGITransport(app=app, client=("198.51.100.20", 4000)),
            base_url="https://testserver",
            headers={"User-Agent": BROWSER},
        ) as http:
            response = await sign_in(http, [("X-Forwarded-For", "203.0.113.7")])
        assert response.status_code == 200, response.text
        session = (await db.exec(select(DeviceSession))).one()
        assert session.ip_address == "198.51.100.20"


def test_the_production_worker_neither_reads_proxy_headers_nor_names_itself() -> None:
    """gunicorn's UvicornWorker would trust X-Forwarded-For from 127.0.0.1 and add `server`."""
    from uvicorn.config import Config

    from app.worker import Worker

    config = Config(app="app.main:app", **Worker.CONFIG_KWARGS)
    assert (config.proxy_headers, config.server_header) == (False, False)
