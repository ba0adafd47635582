"""Where the SIP service sends a request that has a route: to the first hop
of a dialog's route set or of a device's Path, reusing the flow we already
share with that hop (RFC 3261 §8.1.2, §12.2.1.1; RFC 3327)."""

from __future__ import annotations

from callbridge.app import Peer, SipService
from callbridge.pbx.registrar import Binding
from callbridge.settings import Settings
from callbridge.sip import parse_name_addr
from callbridge.sip.uri import parse_uri
from callbridge.transport import Address

PROXY_FLOW = Peer(Address("udp", "127.0.0.2", 5060))


async def service() -> SipService:
    return SipService(Settings(sip_host="127.0.0.1", sip_port=0, public_address="127.0.0.1"))


async def test_a_route_to_the_hop_we_share_a_flow_with_keeps_the_flow() -> None:
    sip = await service()
    assert sip.next_hop(parse_uri("sip:127.0.0.2;lr"), PROXY_FLOW) is PROXY_FLOW
    assert sip.next_hop(parse_uri("sip:127.0.0.2:5060;lr;ftag=x"), PROXY_FLOW) is PROXY_FLOW


async def test_a_route_to_another_hop_goes_there() -> None:
    sip = await service()
    hop = sip.next_hop(parse_uri("sip:10.0.0.9:5080;transport=TCP;lr"), PROXY_FLOW)
    assert isinstance(hop, Peer) and hop.address == Address("tcp", "10.0.0.9", 5080)
    v6 = sip.next_hop(parse_uri("sip:[2001:db8::9];lr"), PROXY_FLOW)
    assert isinstance(v6, Peer) and v6.address == Address("udp", "2001:db8::9", 5060)


async def test_a_hop_named_by_a_host_name_takes_the_flow_we_have() -> None:
    # Resolving it would wait on DNS, on the loop that carries every call.
    sip = await service()
    assert sip.next_hop(parse_uri("sip:proxy.example.com;lr"), PROXY_FLOW) is PROXY_FLOW


async def test_a_device_registered_through_a_proxy_is_reached_by_its_path() -> None:
    sip = await service()
    binding = Binding(
        aor="101",
        contact=parse_name_addr("<sip:101@192.168.1.20:5062>"),
        expires_at=60.0,
        call_id="c",
        cseq=1,
        source=PROXY_FLOW,
        path=(parse_name_addr("<sip:10.0.0.9:5070;lr;received=sip:203.0.113.7:5062>"),),
    )
    hop = sip.peer_for(binding)
    assert isinstance(hop, Peer) and hop.address == Address("udp", "10.0.0.9", 5070)
