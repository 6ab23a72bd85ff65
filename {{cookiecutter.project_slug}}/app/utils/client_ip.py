"""The client's address: the one place that decides whether to believe `X-Forwarded-For`.

The servers run with their own proxy-header handling off (`--no-proxy-headers` in the
Makefile, app/worker.py under gunicorn), so the peer they report is the socket's, and the
header is read here only when that peer is in `TRUSTED_PROXIES`. `Forwarded` (RFC 7239) and
`X-Real-IP` are not read: two sources of truth are two ways to be fooled.
"""

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

# Proxies in a chain we walk through before giving up on a header: real chains have a few.
MAX_HOPS = 16
# The longest spelling of an address without a zone id (the width of the IP columns):
# 0000:0000:0000:0000:0000:ffff:255.255.255.255
MAX_ADDRESS_LENGTH = 45

Address = IPv4Address | IPv6Address
Networks = list[IPv4Network | IPv6Network]


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Networks) -> str | None:
    """Walk X-Forwarded-For from the right and stop at the first hop we do not trust.

    Anything left of that hop was written by the client and could be forged, so it is
    never even parsed. A hop that does not parse means the header cannot be relied on: the
    answer is the peer, not a guess. `forwarded_for` is every header line joined by commas,
    in order (a proxy that adds its own line leaves the client's line first).
    """
    # A zone id is the local interface the socket came in on; it says nothing about the client.
    address = parse_address(peer.partition("%")[0]) if peer else None
    if address is None:
        return None
    if not forwarded_for or not _is_trusted(address, trusted):
        return str(address)
    hops = forwarded_for.rsplit(",", MAX_HOPS)
    hop = address
    for text in reversed(hops[-MAX_HOPS:]):
        parsed = parse_address(text.strip(" \t"))
        if parsed is None:
            return str(address)
        if not _is_trusted(parsed, trusted):
            return str(parsed)
        hop = parsed
    if len(hops) > MAX_HOPS:  # more trusted hops than we examine: not a chain we know
        return str(address)
    return str(hop)  # every hop is one of our proxies: the leftmost is the client


def is_trusted_peer(peer: str, trusted: Networks) -> bool:
    """Whether the socket's peer is one of our proxies (whose headers we may believe)."""
    if not trusted:
        return False
    address = parse_address(peer.partition("%")[0])
    return address is not None and _is_trusted(address, trusted)


def parse_address(text: str) -> Address | None:
    """One spelling per address, or None: it must fit the IP columns and the rate-limit keys.

    IPv4-mapped IPv6 (`::ffff:203.0.113.9`) is the IPv4 address, so a client has one key
    whether it arrives over IPv4 or a dual-stack socket; IPv6 is compressed and lower case;
    a zone id (`fe80::1%eth0`, any text after the `%`) is refused.
    """
    if len(text) > MAX_ADDRESS_LENGTH:
        return None
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address):
        if address.scope_id is not None:
            return None
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def _is_trusted(address: Address, trusted: Networks) -> bool:
    return any(address in network for network in trusted)
