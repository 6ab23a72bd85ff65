"""The client's address, trusting proxy headers only from configured proxies."""

from ipaddress import IPv4Network, IPv6Network, ip_address


def client_ip(
    peer: str | None,
    forwarded_for: str | None,
    trusted: list[IPv4Network | IPv6Network],
) -> str | None:
    """Walk X-Forwarded-For from the right and stop at the first hop we do not trust.

    Anything left of that hop was written by the client and could be forged.
    """
    if peer is None or not _is_trusted(peer, trusted) or not forwarded_for:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_valid(hop):
            return peer
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _is_valid(address: str) -> bool:
    try:
        ip_address(address)
    except ValueError:
        return False
    return True


def _is_trusted(address: str, trusted: list[IPv4Network | IPv6Network]) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)
