"""Human or machine: who opened that email, who clicked that link (docs/engagement.md).

Since Apple Mail Privacy Protection (2021) every image of a message is fetched by a proxy when
the message is delivered, read or not; corporate mail gateways (Microsoft Defender Safe Links,
Proofpoint, Mimecast, Barracuda...) follow every link before the reader sees it. Counting those
as the lead's opens and clicks inflates every rate. Each hit is classified once, when it is
recorded, from the request alone (its user agent, its IP, its headers, how long after the link
was signed it came): a pure function, no I/O, so the public endpoints stay fast.

``classify`` answers ``Engagement(machine, reason)``; the reason is short and stable (it is
grouped on in reports). The rules, in order, first match wins:

1. a prefetch (``Purpose``/``Sec-Purpose``/``X-Purpose``/``X-Moz`` headers say so): machine;
2. no user agent at all: machine (every mail client and browser sends one);
3. a known scanner or proxy by user agent: Apple's proxy (the bare ``Mozilla/5.0``), security
   gateways and link scanners by name, crawlers ("bot", "spider", headless browsers): machine;
4. a known scanner by IP range: Microsoft's Exchange Online Protection (Safe Links) and Apple's
   own network: machine;
5. within ``too_fast`` of the link being signed (the message being rendered and sent): machine,
   nobody reads and clicks that fast;
6. Google's image proxy (Gmail): human — Gmail fetches images when the message is opened (then
   caches them), so its first fetch is an open, only the reader's IP and agent are hidden;
7. anything else: human.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

TOO_FAST = timedelta(seconds=2)

PREFETCH = "prefetch"
NO_USER_AGENT = "no user agent"
APPLE_PROXY = "apple privacy proxy"
SCANNER = "security scanner"
CRAWLER = "crawler"
MICROSOFT = "microsoft scanner"
APPLE_NETWORK = "apple network"
TOO_SOON = "right after sending"
GMAIL_PROXY = "gmail image proxy"
HUMAN = ""

# Link scanners and mail security gateways that name themselves in their user agent.
_SCANNERS = re.compile(
    r"barracuda|mimecast|proofpoint|urldefense|ironport|cisco|symantec|messagelabs|zscaler|"
    r"forcepoint|trend ?micro|sophos|fireeye|trellix|bitdefender|cloudmark|safelinks|"
    r"microsoft office protection|ms-office-scan|checkpoint|fortinet|fortiguard|vade|"
    r"hornetsecurity",
    re.IGNORECASE,
)
_CRAWLERS = re.compile(
    r"bot\b|bot/|spider|crawler|headlesschrome|phantomjs|python-requests|go-http-client|"
    r"\bwget\b|\bcurl/|slurp|preview",
    re.IGNORECASE,
)
_NETWORKS = {
    # Exchange Online Protection: where Microsoft Defender's Safe Links detonates links.
    MICROSOFT: tuple(
        ipaddress.ip_network(n)
        for n in ("40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17")
    ),
    # Apple's own 17.0.0.0/8 (the privacy proxy also egresses through partners' networks: those
    # hits are caught by their user agent).
    APPLE_NETWORK: (ipaddress.ip_network("17.0.0.0/8"),),
}
_PREFETCH_HEADERS = ("purpose", "sec-purpose", "x-purpose", "x-moz")


@dataclass(frozen=True)
class Engagement:
    machine: bool
    reason: str  # "" for a human hit without anything to note


def classify(
    *,
    user_agent: str | None,
    ip: str | None,
    headers: Mapping[str, str] | None = None,
    signed_at: datetime | None = None,
    received_at: datetime | None = None,
    too_fast: timedelta = TOO_FAST,
) -> Engagement:
    """Whether a tracking hit is a machine's, and why (see the module's docstring)."""
    headers = headers or {}
    for name in _PREFETCH_HEADERS:
        value = headers.get(name, "")
        if "prefetch" in value.lower() or "preview" in value.lower():
            return Engagement(True, PREFETCH)
    agent = (user_agent or "").strip()
    if not agent:
        return Engagement(True, NO_USER_AGENT)
    if agent == "Mozilla/5.0":
        return Engagement(True, APPLE_PROXY)
    if _SCANNERS.search(agent):
        return Engagement(True, SCANNER)
    google = "googleimageproxy" in agent.lower()
    if not google and _CRAWLERS.search(agent):
        return Engagement(True, CRAWLER)
    network = _network_of(ip)
    if network:
        return Engagement(True, network)
    if (
        signed_at is not None
        and received_at is not None
        and timedelta(0) <= received_at - signed_at < too_fast
    ):
        return Engagement(True, TOO_SOON)
    return Engagement(False, GMAIL_PROXY if google else HUMAN)


def _network_of(ip: str | None) -> str:
    if not ip:
        return ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    for name, networks in _NETWORKS.items():
        if any(address in network for network in networks):
            return name
    return ""
