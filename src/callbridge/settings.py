"""Settings of a callbridge process, read from `CALLBRIDGE_*` environment
variables (and optionally a TOML file named by `CALLBRIDGE_CONFIG_FILE`)."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .media.policy import DEFAULT_ALLOWED_NETWORKS, AllowedNetworks
from .media.ports import PortRange
from .sip.digest import DigestError, parse_algorithm_list
from .transport.addresses import interface_addresses, reachable_addresses

# The ICE servers the softphone may be given: few, short, STUN or TURN only.
MAX_ICE_SERVERS = 8
MAX_ICE_URLS = 4
_ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


class IceServer(BaseModel):
    """One RTCIceServer for the browser's RTCPeerConnection (WebRTC §4.2.1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: Annotated[
        list[Annotated[str, Field(min_length=6, max_length=256)]],
        Field(min_length=1, max_length=MAX_ICE_URLS),
    ]
    username: Annotated[str, Field(max_length=256)] | None = None
    # Kept out of repr(settings) and the logs; it goes only to signed-in pages.
    credential: Annotated[SecretStr, Field(max_length=256)] | None = None

    @field_validator("urls", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("urls")
    @classmethod
    def _stun_or_turn(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.lower().startswith(_ICE_SCHEMES) or not url.isprintable() or " " in url:
                raise ValueError(f"{url!r} is not a stun:, stuns:, turn: or turns: URI")
        return value

    @model_validator(mode="after")
    def _turn_signs_in(self) -> IceServer:
        # A browser refuses the whole configuration (InvalidAccessError) for
        # a TURN server without both: every call of the panel would fail.
        turn = any(url.lower().startswith(("turn:", "turns:")) for url in self.urls)
        if turn and (self.username is None or self.credential is None):
            raise ValueError("a turn: or turns: server needs a username and a credential")
        return self

    def for_browser(self) -> dict[str, Any]:
        """The RTCIceServer the page is given."""
        server: dict[str, Any] = {"urls": self.urls}
        if self.username is not None:
            server["username"] = self.username
        if self.credential is not None:
            server["credential"] = self.credential.get_secret_value()
        return server


# The algorithms a line keeps a digest HA1 for: the ones phones may be offered.
LINE_DIGEST_ALGORITHMS = ("SHA-256", "MD5")


def normalized_digest_algorithms(text: str) -> str:
    """A list of digest algorithms as people type it ("sha-256, md5") as kept:
    "SHA-256,MD5", in the order given. ValueError says what is wrong and allowed."""
    try:
        return ",".join(parse_algorithm_list(text, LINE_DIGEST_ALGORITHMS))
    except DigestError as error:
        raise ValueError(error.reason) from None


LogLevel = Literal["debug", "info", "warning", "error"]


class Settings(BaseSettings):
    """Everything `callbridge serve` needs; the defaults start a working PBX."""

    model_config = SettingsConfigDict(env_prefix="CALLBRIDGE_", extra="ignore")

    sip_host: str = Field("0.0.0.0", description="Address SIP listens on (UDP and TCP).")
    sip_port: int = Field(5060, ge=0, le=65535, description="SIP port; 0 picks a free one.")
    log_level: LogLevel = "info"
    log_sip_messages: bool = Field(False, description="Log every SIP message in full.")
    log_format: Literal["text", "json"] = "text"
    max_message_size: int = Field(65_535, ge=1_024, le=1_048_576)
    tcp_max_connections: int = Field(1_024, ge=1)
    tcp_max_connections_per_address: int = Field(
        32,
        ge=1,
        description="SIP/TCP connections one remote address may hold open at once, "
        "so one host cannot take every slot of tcp_max_connections.",
    )
    tcp_idle_timeout: float = Field(300.0, gt=0)
    user_agent: str = "callbridge"
    sip_realm: str = Field(
        "callbridge",
        min_length=1,
        description="Digest realm; lines store HA1 per realm, so changing it means "
        "setting every line's password again.",
    )
    sip_digest_algorithms: str = Field(
        "MD5",
        description="Digest algorithms offered to phones (and to the providers of lines "
        "with incoming_auth): SHA-256 and/or MD5, comma separated, one challenge each in "
        "the order given (RFC 8760: the most preferred first). The default is MD5 alone: "
        "most desk phones know only MD5, and baresip 1.0 fails to register when any "
        "challenge is SHA-256, even after an MD5 one. Give a line that knows SHA-256 its "
        "own digest_algorithms (docs/PHONES.md); `MD5,SHA-256` or `SHA-256,MD5` here "
        "shuts out phones like baresip 1.0.",
    )
    registrar_min_expires: int = Field(
        60, ge=1, description="Shorter registrations get 423 Interval Too Brief."
    )
    registrar_max_expires: int = Field(
        3600, ge=60, description="Longer registrations are cut to this many seconds."
    )
    registrar_flow_grace: float = Field(
        30.0,
        ge=0,
        description="Seconds a TCP phone has to reconnect and register again after its "
        "connection closed (or callbridge restarted) before its binding is dropped.",
    )
    sip_ws_max_connections: int = Field(
        1_024, ge=1, description="SIP WebSockets (/ws/sip on the HTTP port) open at once."
    )
    sip_ws_max_connections_per_address: int = Field(
        128,
        ge=1,
        description="SIP WebSockets one remote address may hold open at once (an office's "
        "browsers often share one public address).",
    )
    browser_sip_credential_ttl: float = Field(
        12 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="Seconds a browser's SIP credential (POST /api/v1/me/sip-credentials) "
        "is valid; never longer than the API token it was asked with.",
    )
    browser_sip_secret: SecretStr | None = Field(
        None,
        description="The secret browser SIP credentials are signed with (at least 16 "
        "characters); default: a random one kept in data_dir/browser-sip.secret. Give every "
        "node the same one when several serve the same phones.",
    )
    guard_max_failures: int = Field(
        10, ge=0, description="Failed authentications a source may have in guard_window."
    )
    guard_window: float = Field(60.0, gt=0, description="Seconds the failures are counted over.")
    guard_block_for: float = Field(
        3600.0, gt=0, description="Seconds a source is then dropped without an answer."
    )
    guard_scanner_block_for: float = Field(
        300.0,
        gt=0,
        description="Seconds one request with a scanner's User-Agent blocks its source: "
        "shorter than guard_block_for, as a single UDP packet's source may be forged.",
    )
    guard_account_max_failures: int = Field(
        10,
        ge=0,
        description="Failed authentications one account (the username tried, from any "
        "source) may have in guard_window before it is refused.",
    )
    guard_account_block_for: float = Field(
        300.0,
        gt=0,
        description="Seconds an account is then refused (SIP 503 with Retry-After): "
        "short, so a guesser cannot lock its owner out for long. The HTTP sign-in "
        "has its own fixed rules (10 failures, then 300 s).",
    )
    guard_max_blocks: int = Field(
        10_000,
        ge=1,
        description="Blocks kept at most; past it the oldest is dropped, and logged.",
    )
    overload_delay: float = Field(
        0.015,
        ge=0,
        le=10,
        description="Seconds of standing delay (SIP messages waiting in the socket's queue, "
        "or the event loop running late) above which new calls are shed: a share of new "
        "INVITEs gets 503 with Retry-After, cut while the delay stays above this and given "
        "back while it is under half of it. Calls in progress, registrations and OPTIONS "
        "are always served. 0 turns shedding off.",
    )
    overload_retry_after: int = Field(
        5,
        ge=1,
        le=3600,
        description="Seconds a caller refused for overload is asked to wait (Retry-After).",
    )
    data_dir: Path = Field(Path("."), description="Where the SQLite database and files live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file callbridge.db in data_dir."
    )
    http_host: str = Field("0.0.0.0", description="Address the HTTP API listens on.")
    http_port: int = Field(8000, ge=0, le=65535, description="HTTP port; 0 picks a free one.")
    http_trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or networks (CIDR) of reverse proxies whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed; empty (the default): none, so "
        "every caller is known by the address it connects from.",
    )
    sip_trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or networks (CIDR) of SIP proxies or SBCs in "
        "front of callbridge (Kamailio, say). Their requests are judged by the address the "
        "proxy reports for the sender (Via received): the flood guard counts failures per "
        "account and per that address, and never blocks the proxy itself. Empty (the "
        "default): every request is judged by the address it comes from.",
    )
    public_address: str | None = Field(
        None, description="Address put in SDP and Contact; default: the SIP host or this host."
    )
    admin_password: SecretStr | None = Field(
        None, description="Creates the user `admin` on first start when no admin exists."
    )
    rtp_ports: str = Field(
        "10000-20000",
        description="RTP port range FIRST-LAST for anchored media (a pair per call leg).",
    )
    rtp_timeout: float = Field(
        60.0,
        ge=0,
        description="Seconds without RTP or RTCP from a side that should send after which "
        "a call is ended; 0 = never.",
    )
    media_allowed_networks: str = Field(
        DEFAULT_ALLOWED_NETWORKS,
        description="Where the relay may send a call's audio: `public` (every globally "
        "routable address) and/or networks in CIDR notation, comma separated, e.g. "
        "`public,192.168.0.0/16`. An SDP address outside them is never sent to: the leg "
        "waits for the phone's own packets (NAT latching) from an allowed address. "
        "Private, loopback and link-local ranges are allowed only when listed.",
    )
    media_latch_signalling_host: bool = Field(
        True,
        description="A phone behind NAT (media from another address than its SDP names) "
        "is latched on only when its media comes from the host its SIP comes from. Turn "
        "off when phones' SIP reaches callbridge through a proxy on another host: then "
        "any host that first sends a steady stream after our answer is latched on.",
    )
    ice_servers: Annotated[list[IceServer], Field(max_length=MAX_ICE_SERVERS)] = Field(
        default_factory=list,
        description="STUN and TURN servers the browser's softphone is given, as JSON: "
        '`[{"urls": "turn:turn.example.com:3478", "username": "u", "credential": "p"}]`. '
        "Empty by default: callbridge answers ICE on its own addresses (ICE-lite, host "
        "candidates), which a browser that can reach them needs nothing more for; a TURN "
        "server helps browsers behind firewalls that block UDP to it. A TURN credential "
        "given here reaches every signed-in employee's page.",
    )
    music_on_hold: bool = Field(
        True,
        description="A phone's hold is answered by callbridge, and the other party hears "
        "the music on hold; off, the hold re-INVITE goes on to the other phone (which may "
        "play its own).",
    )
    ivr_voice: str = Field(
        "en",
        max_length=40,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_+-]*(/[A-Za-z0-9][A-Za-z0-9_+-]*)?$",
        description="The espeak-ng voice IVR menus' text greetings are spoken in (`espeak-ng "
        "--voices` lists them: `en`, `en-us`, `ru`, `de`, ...).",
    )
    recording: bool = Field(
        True,
        description="Record every answered call (one stereo WAV per call: the customer "
        "left, the employee right); an internal or external line's `recording` overrides "
        "it for its calls.",
    )
    web_dir: Path | None = Field(
        None,
        description="The built web panel served at `/`; default: web/dist of the source "
        "checkout (`make web` builds it).",
    )
    recordings_dir: Path | None = Field(
        None, description="Where recordings are written; default: data_dir/recordings."
    )
    recording_retention_days: int = Field(
        0,
        ge=0,
        le=36_500,
        description="Recordings of calls that started longer ago are removed (checked "
        "hourly); 0 = kept until deleted.",
    )
    auth_token_ttl: float = Field(12 * 3600, gt=0, description="Seconds an API token lives.")
    default_region: str = Field(
        "US",
        description="ISO 3166 country national phone numbers are read in (CRM cards, "
        "external lines that name none).",
    )

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("expected an ISO 3166 country code phonenumbers knows, e.g. US or DE")
        return region

    @field_validator("sip_digest_algorithms", mode="before")
    @classmethod
    def _digest_algorithms(cls, value: Any) -> Any:
        return normalized_digest_algorithms(value) if isinstance(value, str) else value

    @field_validator("http_trusted_proxies", "sip_trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        for item in _comma_list(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    def trusted_proxies(self) -> list[str]:
        """The proxies' addresses and networks, one per item."""
        return _comma_list(self.http_trusted_proxies)

    def sip_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The SIP proxies in front, as networks."""
        items = _comma_list(self.sip_trusted_proxies)
        return [ipaddress.ip_network(item, strict=False) for item in items]

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("rtp_ports")
    @classmethod
    def _port_range(cls, value: str) -> str:
        PortRange.parse(value)  # its error names what is wrong with the range
        return value

    @field_validator("media_allowed_networks")
    @classmethod
    def _allowed_networks(cls, value: str) -> str:
        AllowedNetworks.parse(value)  # its error names the entry that is wrong
        return value

    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file in `data_dir`."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'callbridge.db').resolve()}"

    def effective_recordings_dir(self) -> Path:
        """Where recordings live: the setting, or `recordings` in `data_dir`."""
        return (self.recordings_dir or self.data_dir / "recordings").resolve()

    def effective_public_address(self) -> str:
        """The address others reach us at: the public address, the SIP host, or
        when SIP listens on every interface, this host's own address."""
        if self.public_address:
            return self.public_address
        if self.sip_host not in ("0.0.0.0", "::", ""):
            return self.sip_host
        return own_address()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("CALLBRIDGE_CONFIG_FILE")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, Path(config_file)))
        return tuple(sources)


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def own_address() -> str:
    """This machine's address by its host name, resolved locally (no packet
    leaves the machine). Where the name resolves to loopback (Debian maps it
    to 127.0.1.1) or not at all, the first interface's IPv4 address that is
    not loopback; loopback only when the machine has nothing else."""
    try:
        resolved = socket.gethostbyname(socket.gethostname())
    except OSError:
        resolved = "127.0.0.1"
    if not ipaddress.ip_address(resolved).is_loopback:
        return resolved
    return next(iter(reachable_addresses("0.0.0.0", interface_addresses())), "127.0.0.1")
