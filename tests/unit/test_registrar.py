"""The registrar's rules (RFC 3261 §10.3), with the clock as a number."""

from __future__ import annotations

import pytest

from callbridge.pbx.registrar import MemoryLocation, Registrar, RegistrarPolicy
from callbridge.sip import Request, Response, parse

AOR = "101"


def register(
    *contacts: str, expires: int | None = None, call_id: str = "reg-1", cseq: int = 1
) -> Request:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-reg-{cseq}",
        "Max-Forwards: 70",
        "From: <sip:101@127.0.0.1>;tag=dev",
        "To: <sip:101@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "User-Agent: desk-phone/1.0",
        *(f"Contact: {c}" for c in contacts),
    ]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    message = parse(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def apply(
    registrar: Registrar, request: Request, *, now: float = 0.0, max_devices: int = 2
) -> Response:
    return registrar.register(
        request, aor=AOR, max_devices=max_devices, source=("127.0.0.2", 5062), now=now, to_tag="r"
    )


def contacts_of(response: Response) -> dict[str, str | None]:
    return {str(c.uri): c.params.get("expires") for c in response.contacts}


@pytest.fixture
def registrar() -> Registrar:
    return Registrar(MemoryLocation(), RegistrarPolicy(min_expires=60, max_expires=3600))


def test_register_adds_a_binding_with_the_requested_lifetime(registrar: Registrar) -> None:
    response = apply(registrar, register("<sip:101@127.0.0.2:5062>", expires=600))
    assert response.status == 200
    assert contacts_of(response) == {"sip:101@127.0.0.2:5062": "600"}
    assert "Date" in response.headers
    [binding] = registrar.location.bindings(AOR, now=1.0)
    assert binding.source == ("127.0.0.2", 5062)
    assert binding.user_agent == "desk-phone/1.0"


def test_contact_expires_parameter_wins_over_the_header(registrar: Registrar) -> None:
    response = apply(registrar, register("<sip:101@127.0.0.2:5062>;expires=120", expires=600))
    assert contacts_of(response) == {"sip:101@127.0.0.2:5062": "120"}


def test_without_any_expires_the_default_applies_and_long_ones_are_cut(
    registrar: Registrar,
) -> None:
    assert contacts_of(apply(registrar, register("<sip:a@127.0.0.2>"))) == {
        "sip:a@127.0.0.2": "3600"
    }
    response = apply(registrar, register("<sip:a@127.0.0.2>", expires=86400, cseq=2))
    assert contacts_of(response) == {"sip:a@127.0.0.2": "3600"}


def test_too_brief_an_interval_gets_423_with_min_expires(registrar: Registrar) -> None:
    response = apply(registrar, register("<sip:101@127.0.0.2>", expires=10))
    assert response.status == 423
    assert response.headers.get("Min-Expires") == "60"
    assert registrar.location.bindings(AOR, now=0.0) == []


def test_bindings_expire_on_time(registrar: Registrar) -> None:
    apply(registrar, register("<sip:101@127.0.0.2>", expires=60), now=100.0)
    assert len(registrar.location.bindings(AOR, now=159.9)) == 1
    assert registrar.location.bindings(AOR, now=160.0) == []


def test_refresh_replaces_the_binding_instead_of_adding_one(registrar: Registrar) -> None:
    apply(registrar, register("<sip:101@127.0.0.2>", expires=60), now=0.0)
    response = apply(registrar, register("<sip:101@127.0.0.2>", expires=60, cseq=2), now=50.0)
    assert contacts_of(response) == {"sip:101@127.0.0.2": "60"}
    [binding] = registrar.location.bindings(AOR, now=100.0)
    assert binding.expires_at == 110.0


def test_expires_zero_removes_one_binding(registrar: Registrar) -> None:
    apply(registrar, register("<sip:a@127.0.0.2>", "<sip:b@127.0.0.3>", expires=600))
    response = apply(registrar, register("<sip:a@127.0.0.2>", expires=0, cseq=2))
    assert contacts_of(response) == {"sip:b@127.0.0.3": "600"}


def test_star_with_expires_zero_removes_every_binding(registrar: Registrar) -> None:
    apply(registrar, register("<sip:a@127.0.0.2>", "<sip:b@127.0.0.3>", expires=600))
    response = apply(registrar, register("*", expires=0, cseq=2))
    assert response.status == 200
    assert response.contacts == []
    assert registrar.location.bindings(AOR, now=1.0) == []


@pytest.mark.parametrize(
    "request_",
    [
        register("*", expires=600, cseq=2),
        register("*", cseq=2),
        register("*", "<sip:a@127.0.0.2>", expires=0, cseq=2),
    ],
)
def test_star_is_refused_unless_alone_with_expires_zero(
    registrar: Registrar, request_: Request
) -> None:
    apply(registrar, register("<sip:a@127.0.0.2>", expires=600))
    assert apply(registrar, request_).status == 400
    assert len(registrar.location.bindings(AOR, now=1.0)) == 1


def test_register_without_contact_fetches_the_bindings(registrar: Registrar) -> None:
    apply(registrar, register("<sip:a@127.0.0.2>", expires=600), now=0.0)
    response = apply(registrar, register(call_id="other", cseq=9), now=100.0)
    assert response.status == 200
    assert contacts_of(response) == {"sip:a@127.0.0.2": "500"}


def test_one_device_more_than_allowed_is_refused_with_a_reason(registrar: Registrar) -> None:
    apply(registrar, register("<sip:a@127.0.0.2>", expires=600), max_devices=1)
    response = apply(
        registrar, register("<sip:b@127.0.0.3>", expires=600, call_id="other"), max_devices=1
    )
    assert response.status == 403
    assert "1 devices" in (response.headers.get("Warning") or "")
    assert [str(b.uri) for b in registrar.location.bindings(AOR, now=1.0)] == ["sip:a@127.0.0.2"]


def test_a_refresh_does_not_count_against_the_device_limit(registrar: Registrar) -> None:
    apply(registrar, register("<sip:a@127.0.0.2>", expires=600), max_devices=1)
    response = apply(registrar, register("<sip:a@127.0.0.2>", expires=600, cseq=2), max_devices=1)
    assert response.status == 200


def test_an_older_cseq_on_the_same_call_id_changes_nothing(registrar: Registrar) -> None:
    apply(registrar, register("<sip:a@127.0.0.2>", expires=600, cseq=5))
    response = apply(registrar, register("<sip:a@127.0.0.2>", expires=0, cseq=4))
    assert response.status == 500
    assert len(registrar.location.bindings(AOR, now=1.0)) == 1


def test_a_refused_request_changes_no_binding_at_all(registrar: Registrar) -> None:
    apply(registrar, register("<sip:a@127.0.0.2>", expires=600))
    # The first contact would be removed, the second is too brief: neither applies.
    response = apply(
        registrar,
        register("<sip:a@127.0.0.2>;expires=0", "<sip:b@127.0.0.3>;expires=5", cseq=2),
    )
    assert response.status == 423
    assert [str(b.uri) for b in registrar.location.bindings(AOR, now=1.0)] == ["sip:a@127.0.0.2"]


@pytest.mark.parametrize("expires", ["soon", "-1", "١٢٠"])
def test_malformed_expires_is_400(registrar: Registrar, expires: str) -> None:
    request = register(f"<sip:a@127.0.0.2>;expires={expires}")
    assert apply(registrar, request).status == 400


def test_an_expires_of_thousands_of_digits_is_cut_to_the_maximum(registrar: Registrar) -> None:
    response = apply(registrar, register("<sip:a@127.0.0.2>;expires=" + "9" * 5000))
    assert contacts_of(response) == {"sip:a@127.0.0.2": "3600"}
    request = register("<sip:a@127.0.0.2>", cseq=2)
    request.headers.set("Expires", "9" * 5000)
    response = apply(registrar, request)
    assert contacts_of(response) == {"sip:a@127.0.0.2": "3600"}
    padded = "0" * 5000 + "120"
    response = apply(registrar, register(f"<sip:a@127.0.0.2>;expires={padded}", cseq=3))
    assert contacts_of(response) == {"sip:a@127.0.0.2": "120"}


@pytest.mark.parametrize(
    "contact",
    [
        '"\x00" <sip:101@127.0.0.2:5062>',
        '"desk\x1b[2J" <sip:101@127.0.0.2:5062>',
        '<sip:101@127.0.0.2:5062>;x="\x07"',
        '"\udcff" <sip:101@127.0.0.2:5062>',
    ],
)
def test_a_contact_with_a_control_character_is_refused_and_nothing_bound(
    registrar: Registrar, contact: str
) -> None:
    request = register("<sip:101@127.0.0.2:5062>", expires=600)
    request.headers.set("Contact", contact)
    response = apply(registrar, request)
    assert response.status == 400
    assert registrar.location.bindings(AOR, now=1.0) == []


def test_the_user_agent_is_kept_printable_and_cut_to_its_column(registrar: Registrar) -> None:
    request = register("<sip:101@127.0.0.2:5062>", expires=600)
    request.headers.set("User-Agent", "phone\x00\x1b[2J\udcff" + "u" * 400)
    assert apply(registrar, request).status == 200
    [binding] = registrar.location.bindings(AOR, now=1.0)
    assert binding.user_agent == "phone\ufffd\ufffd[2J\ufffd" + "u" * 244


# --- Path (RFC 3327): the proxies a device registered through --------------


def register_through(*extra: str, contact: str = "<sip:101@10.0.0.7:5062>") -> Request:
    """A REGISTER as a proxy in front passes it on: its Via on top, a Path."""
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bK-proxy",
        "Via: SIP/2.0/UDP 10.0.0.7:5062;received=192.0.2.7;branch=z9hG4bK-phone",
        "Max-Forwards: 69",
        "From: <sip:101@127.0.0.1>;tag=dev",
        "To: <sip:101@127.0.0.1>",
        "Call-ID: reg-path",
        "CSeq: 1 REGISTER",
        f"Contact: {contact}",
        *extra,
    ]
    message = parse(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


PROXY_PATH = "<sip:127.0.0.9:5060;lr;received=sip:192.0.2.7:5062>"


def test_a_binding_keeps_the_path_it_registered_through(registrar: Registrar) -> None:
    response = apply(registrar, register_through(f"Path: {PROXY_PATH}", "Path: <sip:edge;lr>"))
    assert response.status == 200
    [binding] = registrar.location.bindings(AOR, now=1.0)
    assert [str(entry) for entry in binding.path] == [PROXY_PATH, "<sip:edge;lr>"]


def test_path_entries_in_one_header_are_kept_in_order(registrar: Registrar) -> None:
    apply(registrar, register_through(f"Path: {PROXY_PATH}, <sip:edge;lr>"))
    [binding] = registrar.location.bindings(AOR, now=1.0)
    assert [str(entry) for entry in binding.path] == [PROXY_PATH, "<sip:edge;lr>"]


def test_the_path_goes_back_only_to_a_phone_that_supports_it(registrar: Registrar) -> None:
    # RFC 3327 §5.3: echoed in the 200 when the REGISTER says Supported: path.
    silent = apply(registrar, register_through(f"Path: {PROXY_PATH}"))
    assert silent.headers.get("Supported") == "path"
    assert silent.headers.get_all("Path") == []
    request = register_through(f"Path: {PROXY_PATH}", "Supported: replaces, PATH")
    told = apply(registrar, _with_cseq(request, 2))
    assert told.headers.get_all("Path") == [PROXY_PATH]


def _with_cseq(request: Request, cseq: int) -> Request:
    request.headers.set("CSeq", f"{cseq} REGISTER")
    return request


def test_a_registration_without_path_replaces_one_with_it(registrar: Registrar) -> None:
    apply(registrar, register_through(f"Path: {PROXY_PATH}"))
    apply(registrar, _with_cseq(register_through(), 2))
    [binding] = registrar.location.bindings(AOR, now=1.0)
    assert binding.path == ()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("Path: <sip:127.0.0.9;lr", "Malformed Path"),
        ("Path: " + ", ".join(f"<sip:hop{i};lr>" for i in range(9)), "Path Too Long"),
        (f"Path: <sip:{'p' * 2100};lr>", "Path Too Long"),
    ],
)
def test_a_path_that_cannot_be_kept_is_refused_and_changes_nothing(
    registrar: Registrar, path: str, reason: str
) -> None:
    response = apply(registrar, register_through(path))
    assert (response.status, response.reason) == (400, reason)


# -- devices and flows (RFC 5626) -------------------------------------------

INSTANCE = '+sip.instance="<urn:uuid:ba1d8e91-0c10-00ba-a748-9f2ba8aeaab7>"'


def apply_from(
    registrar: Registrar,
    request: Request,
    source: object,
    *,
    now: float = 0.0,
    max_devices: int = 1,
) -> Response:
    return registrar.register(
        request, aor=AOR, max_devices=max_devices, source=source, now=now, to_tag="r"
    )


def uris(registrar: Registrar) -> list[str]:
    return [str(b.uri) for b in registrar.location.bindings(AOR, now=1.0)]


def test_the_same_instance_replaces_its_binding_whatever_the_uri(registrar: Registrar) -> None:
    apply_from(registrar, register(f"<sip:a@127.0.0.2:40001>;{INSTANCE}", expires=600), "flow-1")
    response = apply_from(
        registrar,
        register(f"<sip:a@127.0.0.2:40002>;{INSTANCE}", expires=600, call_id="after-reboot"),
        "flow-2",
    )
    assert response.status == 200
    [binding] = registrar.location.bindings(AOR, now=1.0)
    assert (str(binding.uri), binding.source) == ("sip:a@127.0.0.2:40002", "flow-2")
    assert binding.instance == "<urn:uuid:ba1d8e91-0c10-00ba-a748-9f2ba8aeaab7>"


def test_the_flows_of_one_instance_are_told_apart_by_reg_id(registrar: Registrar) -> None:
    for reg_id, call_id in ((1, "flow-one"), (2, "flow-two"), (1, "flow-one-again")):
        contact = f"<sip:a@127.0.0.2:4000{reg_id}>;{INSTANCE};reg-id={reg_id}"
        response = apply_from(
            registrar, register(contact, expires=600, call_id=call_id), call_id, max_devices=2
        )
        assert response.status == 200
    bindings = registrar.location.bindings(AOR, now=1.0)
    assert sorted((b.reg_id, b.call_id) for b in bindings) == [
        ("1", "flow-one-again"),
        ("2", "flow-two"),
    ]


def test_the_same_call_id_from_a_new_port_replaces_the_binding(registrar: Registrar) -> None:
    apply_from(registrar, register("<sip:a@127.0.0.2:40001>", expires=600), "flow-1")
    response = apply_from(registrar, register("<sip:a@127.0.0.2:40002>", expires=600, cseq=2), "f2")
    assert response.status == 200
    assert uris(registrar) == ["sip:a@127.0.0.2:40002"]


def test_a_stale_register_on_the_same_call_id_does_not_replace_a_newer_one(
    registrar: Registrar,
) -> None:
    apply_from(registrar, register("<sip:a@127.0.0.2:40001>", expires=600, cseq=5), "flow-1")
    response = apply_from(registrar, register("<sip:a@127.0.0.2:40002>", expires=600, cseq=4), "f2")
    assert response.status == 500
    assert uris(registrar) == ["sip:a@127.0.0.2:40001"]


def test_contacts_registered_together_stay_side_by_side(registrar: Registrar) -> None:
    request = register("<sip:a@127.0.0.2>", "<sip:a@127.0.0.3>", expires=600)
    assert apply_from(registrar, request, "flow", max_devices=2).status == 200
    assert uris(registrar) == ["sip:a@127.0.0.2", "sip:a@127.0.0.3"]
    # Taking one away leaves the other, though both have the same Call-ID.
    apply_from(registrar, register("<sip:a@127.0.0.2>", expires=0, cseq=2), "flow", max_devices=2)
    assert uris(registrar) == ["sip:a@127.0.0.3"]


def test_a_binding_whose_flow_is_dead_gives_its_place_to_a_new_device() -> None:
    dead = {"flow-1"}
    registrar = Registrar(MemoryLocation(), flow_alive=lambda source: source not in dead)
    apply_from(registrar, register("<sip:a@127.0.0.2:40001>", expires=600), "flow-1")
    # Another device (another Call-ID, no instance): only the dead flow lets it in.
    response = apply_from(
        registrar, register("<sip:b@127.0.0.3:40002>", expires=600, call_id="other"), "flow-2"
    )
    assert response.status == 200
    assert uris(registrar) == ["sip:b@127.0.0.3:40002"]


def test_live_flows_still_fill_a_line() -> None:
    registrar = Registrar(MemoryLocation(), flow_alive=lambda source: source != "flow-1")
    for uri, call_id, flow in (("a@127.0.0.2", "one", "flow-1"), ("b@127.0.0.3", "two", "flow-2")):
        response = apply_from(
            registrar, register(f"<sip:{uri}>", expires=600, call_id=call_id), flow, max_devices=2
        )
        assert response.status == 200
    response = apply_from(
        registrar,
        register("<sip:c@127.0.0.4>", "<sip:d@127.0.0.5>", expires=600, call_id="three"),
        "flow-3",
        max_devices=2,
    )
    # c takes the dead flow's place; d finds both places held by live flows.
    assert response.status == 403
    assert uris(registrar) == ["sip:a@127.0.0.2", "sip:b@127.0.0.3"]


def test_forget_removes_the_bindings_picked_in_every_aor(registrar: Registrar) -> None:
    apply_from(registrar, register("<sip:a@127.0.0.2>", expires=600), "flow-1")
    registrar.register(
        register("<sip:b@127.0.0.3>", expires=600, call_id="two"),
        aor="102",
        max_devices=1,
        source="flow-2",
        now=0.0,
        to_tag="r",
    )
    assert registrar.forget(lambda b: b.source == "flow-1", now=1.0) == 1
    assert registrar.location.bindings(AOR, now=1.0) == []
    assert len(registrar.location.bindings("102", now=1.0)) == 1


@pytest.mark.parametrize(
    "params",
    [
        '+sip.instance=""',
        '+sip.instance="<urn:uuid:' + "a" * 300 + '>"',
        f"{INSTANCE};reg-id=0",
        f"{INSTANCE};reg-id=2147483648",
        f"{INSTANCE};reg-id=" + "9" * 5000,
        f"{INSTANCE};reg-id=one",
    ],
)
def test_a_malformed_device_identity_is_refused(registrar: Registrar, params: str) -> None:
    response = apply(registrar, register(f"<sip:a@127.0.0.2>;{params}", expires=600))
    assert response.status == 400
    assert registrar.location.bindings(AOR, now=1.0) == []


def test_a_device_behind_a_proxy_is_reached_by_its_path_whatever_its_flow() -> None:
    # The proxy's connection to us may close; the Path still reaches the phone.
    registrar = Registrar(MemoryLocation(), flow_alive=lambda source: False)
    apply(registrar, register_through(f"Path: {PROXY_PATH}"), max_devices=1)
    [binding] = registrar.location.bindings(AOR, now=1.0)
    assert registrar.reachable(binding)
    second = register_through(f"Path: {PROXY_PATH}", contact="<sip:101@10.0.0.8:5062>")
    second.headers.set("Call-ID", "another-phone")
    assert apply(registrar, second, max_devices=1).status == 403
