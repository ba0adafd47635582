"""The tables: employees, internal lines, API users and their tokens,
registrations, call records, external lines, IVR menus, the routing and
normalization rules, and the CRM's cards (contacts, accounts, leads), their
phone index and notes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..sip.digest import compute_ha1

Role = Literal["admin", "supervisor", "operator"]
ROLES: tuple[Role, ...] = ("admin", "supervisor", "operator")

CallDirection = Literal["internal", "incoming", "outgoing"]
CALL_DIRECTIONS: tuple[CallDirection, ...] = ("internal", "incoming", "outgoing")
CallStatus = Literal["in_progress", "answered", "missed", "busy", "rejected", "failed", "cancelled"]
CALL_STATUSES: tuple[CallStatus, ...] = (
    "in_progress",
    "answered",
    "missed",
    "busy",
    "rejected",
    "failed",
    "cancelled",
)
HangupSide = Literal["caller", "callee", "system"]
HANGUP_SIDES: tuple[HangupSide, ...] = ("caller", "callee", "system")

# Named constraints, so migrations can alter them the same way on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Employee(Base):
    """A person on the team; the CRM extends this table with its own fields."""

    __tablename__ = "employees"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The admin's choice: without it the employee's line neither rings nor calls out.
    telephony_enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class InternalLine(Base):
    """An extension employees' devices register to. The SIP password is kept
    only as digest HA1 values for the configured realm, never in clear."""

    __tablename__ = "internal_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(15), unique=True)
    employee_id: Mapped[int | None] = mapped_column(
        ForeignKey("employees.id", ondelete="SET NULL"), index=True
    )
    max_devices: Mapped[int] = mapped_column(Integer, default=1)
    ring_timeout: Mapped[int] = mapped_column(Integer, default=30)
    max_talk_duration: Mapped[int] = mapped_column(Integer, default=0)
    max_incoming_calls: Mapped[int] = mapped_column(Integer, default=1)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # Empty: no password (a line a rollback brought back after it was
    # deleted): nothing authenticates as it until one is set.
    ha1_md5: Mapped[str] = mapped_column(String(32), default="")
    ha1_sha256: Mapped[str] = mapped_column(String(64), default="")
    # Set when the line's employee is deleted: the line neither registers,
    # calls nor rings until an edit gives it to another employee together
    # with a new password. Live state, like the HA1s: no version carries it.
    telephony_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Digest algorithms its phones are offered, in order ("MD5" or
    # "SHA-256,MD5"); NULL: the global CALLBRIDGE_SIP_DIGEST_ALGORITHMS.
    digest_algorithms: Mapped[str | None] = mapped_column(String(16), default=None)
    # Listen for DTMF tones in its phones' audio (devices without RFC 4733 or INFO).
    inband_dtmf: Mapped[bool] = mapped_column(Boolean, default=False)
    # Whether its calls are recorded; NULL: as CALLBRIDGE_RECORDING says.
    recording: Mapped[bool | None] = mapped_column(Boolean, default=None)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    def set_password(self, password: str, realm: str) -> None:
        """Keep what digest authentication needs (HA1 for MD5 and SHA-256 in
        `realm`), not the password; call again after a username change."""
        self.ha1_md5 = compute_ha1(self.username, realm, password, "MD5")
        self.ha1_sha256 = compute_ha1(self.username, realm, password, "SHA-256")


class User(Base):
    """Someone who signs in to the API or the panel; the password is an argon2 hash."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('admin', 'supervisor', 'operator')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    employee_id: Mapped[int | None] = mapped_column(
        ForeignKey("employees.id", ondelete="SET NULL"), index=True
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class ApiToken(Base):
    """A bearer token, kept as the SHA-256 of its value: a copy of the table
    does not let anyone sign in."""

    __tablename__ = "api_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class Registration(Base):
    """One device's binding to a line (RFC 3261 §10), kept so registrations
    survive a restart; the SIP side works on its in-memory copy."""

    __tablename__ = "registrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    aor: Mapped[str] = mapped_column(String(64), index=True)
    contact: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    call_id: Mapped[str] = mapped_column(String(255))
    cseq: Mapped[int] = mapped_column(Integer)
    transport: Mapped[str] = mapped_column(String(8))
    source_host: Mapped[str] = mapped_column(String(64))
    source_port: Mapped[int] = mapped_column(Integer)
    user_agent: Mapped[str | None] = mapped_column(String(255))
    # The Path the device registered through (RFC 3327), as a header value.
    path: Mapped[str | None] = mapped_column(Text)


class CallRecord(Base):
    """One call, answered or not, from the moment it starts: a record left
    `in_progress` by a crash is closed as failed at the next start."""

    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint("direction IN ('internal', 'incoming', 'outgoing')", name="direction"),
        CheckConstraint(
            "status IN ('in_progress', 'answered', 'missed', 'busy', 'rejected', 'failed', "
            "'cancelled')",
            name="status",
        ),
        CheckConstraint("hangup_side IN ('caller', 'callee', 'system')", name="hangup_side"),
        # A card's and an employee's history: newest first, straight off an index.
        # An account's history merges its contacts' calls by (started_at, id)
        # and leaves out of its own those linked to one of its contacts: with
        # `id` and `contact_id` in these two indexes neither needs a table row
        # (bench/history_load.py: 1 s -> 10 ms for 110,000 calls on SQLite).
        Index("ix_calls_contact_started", "contact_id", "started_at"),
        Index("ix_calls_account_started", "account_id", "started_at"),
        Index("ix_calls_lead_started", "lead_id", "started_at"),
        Index("ix_calls_employee_started", "employee_id", "started_at"),
        # The missed calls (`GET /calls?status=missed`), newest first.
        Index("ix_calls_status_started", "status", "started_at"),
    )

    # Globally unique (uuid4 hex), so records from several nodes never collide.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    direction: Mapped[str] = mapped_column(String(16))
    caller_number: Mapped[str] = mapped_column(String(32))
    callee_number: Mapped[str] = mapped_column(String(32))
    caller_raw: Mapped[str | None] = mapped_column(String(255))
    callee_raw: Mapped[str | None] = mapped_column(String(255))
    internal_line_id: Mapped[int | None] = mapped_column(
        ForeignKey("internal_lines.id", ondelete="SET NULL"), index=True
    )
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    talk_seconds: Mapped[int] = mapped_column(Integer, default=0)
    # Of the talk time, how long the call was on hold (either side held).
    hold_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(16))
    hangup_side: Mapped[str | None] = mapped_column(String(8))
    hangup_cause: Mapped[str | None] = mapped_column(String(128))
    sip_call_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # The customer's number (E.164 when it reads as one); NULL for internal calls.
    client_number: Mapped[str | None] = mapped_column(String(32), index=True)
    # The card the call belongs to: the one match of identification, or the
    # one an employee linked (`POST /calls/{id}/link`, a card created with `call_id`).
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"))
    # Several cards matched the number: [{"type": "contact", "id": 7, "name": ...}],
    # for the employee to choose from; none of them is linked.
    matches: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # The call's recording: its file under the recordings directory
    # ("2026/12/07/<id>.wav"), set when recording starts; its size and
    # length once the file is complete (NULL while it is being written,
    # or when a crash interrupted it: the next start completes it).
    recording: Mapped[str | None] = mapped_column(String(64))
    recording_size: Mapped[int | None] = mapped_column(BigInteger)
    recording_ms: Mapped[int | None] = mapped_column(BigInteger)


Transport = Literal["udp", "tcp"]
TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp")
RuleDirection = Literal["incoming", "outgoing"]
RULE_DIRECTIONS: tuple[RuleDirection, ...] = ("incoming", "outgoing")
ActionType = Literal["internal_line", "external_line", "ivr", "deny"]
ACTION_TYPES: tuple[ActionType, ...] = ("internal_line", "external_line", "ivr", "deny")
NormalizationField = Literal["request_uri", "from", "to", "pai", "display_name"]
NORMALIZATION_FIELDS: tuple[NormalizationField, ...] = (
    "request_uri",
    "from",
    "to",
    "pai",
    "display_name",
)
NormalizationMethod = Literal["pattern", "e164", "e164_digits", "national"]
NORMALIZATION_METHODS: tuple[NormalizationMethod, ...] = (
    "pattern",
    "e164",
    "e164_digits",
    "national",
)

# The region national numbers are read in when a line names none.
DEFAULT_REGION = "US"
# The default incoming rule migration 0004 creates; its target is NULL until
# an admin sets the internal line it sends calls to.
DEFAULT_INCOMING_RULE_NAME = "Default incoming"
DEFAULT_INCOMING_RULE_PRIORITY = 1_000_000


class ExternalLine(Base):
    """A SIP trunk at a provider. The password is kept as given, not hashed:
    callbridge answers the provider's digest challenges with it, which needs
    the password itself. The API never returns it."""

    __tablename__ = "external_lines"
    __table_args__ = (
        CheckConstraint("transport IN ('udp', 'tcp')", name="transport"),
        CheckConstraint("total_lines >= 1", name="total_lines"),
        CheckConstraint(
            "outgoing_lines >= 0 AND outgoing_lines <= total_lines", name="outgoing_lines"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # host[:port]; an IPv6 address in brackets.
    server: Mapped[str] = mapped_column(String(255))
    # The user part callbridge presents (From, Contact); empty: the login.
    username: Mapped[str] = mapped_column(String(64), default="")
    register: Mapped[bool] = mapped_column(Boolean, default=False)
    login: Mapped[str] = mapped_column(String(128), default="")
    password: Mapped[str] = mapped_column(String(128), default="")
    # Challenge the provider's INVITEs (407) and check them with login and
    # password, for a provider that answers digest challenges.
    incoming_auth: Mapped[bool] = mapped_column(Boolean, default=False)
    # Listen for DTMF tones in the provider's audio (old gateways).
    inband_dtmf: Mapped[bool] = mapped_column(Boolean, default=False)
    # Whether its calls are recorded; NULL: as CALLBRIDGE_RECORDING says.
    recording: Mapped[bool | None] = mapped_column(Boolean, default=None)
    total_lines: Mapped[int] = mapped_column(Integer, default=1)
    outgoing_lines: Mapped[int] = mapped_column(Integer, default=1)
    transport: Mapped[str] = mapped_column(String(8), default="udp")
    # IP addresses and CIDR networks the provider may also send from.
    alt_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    # ISO 3166-1 alpha-2 country national numbers on this line are read in.
    default_region: Mapped[str] = mapped_column(String(2), default=DEFAULT_REGION)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class RoutingRule(Base):
    """Where a call goes: the first rule by priority (lower first) whose
    direction, external line (NULL: any) and masks match decides.

    `action_target` is an internal line's number for `internal_line`, an
    external line's id (as text) for `external_line`, NULL otherwise. The one
    `is_default` rule (incoming) catches the incoming calls no other rule
    takes; created by the migration with a NULL target, it answers 480 until
    an admin sets the internal line it sends calls to.
    """

    __tablename__ = "routing_rules"
    __table_args__ = (
        CheckConstraint("direction IN ('incoming', 'outgoing')", name="direction"),
        CheckConstraint(
            "action_type IN ('internal_line', 'external_line', 'ivr', 'deny')",
            name="action_type",
        ),
        CheckConstraint("priority >= 0", name="priority"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    direction: Mapped[str] = mapped_column(String(16))
    external_line_id: Mapped[int | None] = mapped_column(
        ForeignKey("external_lines.id", ondelete="RESTRICT"), index=True
    )
    priority: Mapped[int] = mapped_column(Integer)
    action_type: Mapped[str] = mapped_column(String(16))
    action_target: Mapped[str | None] = mapped_column(String(64))
    source_mask: Mapped[str] = mapped_column(String(64), default="*")
    destination_mask: Mapped[str] = mapped_column(String(64), default="*")
    destination_rewrite: Mapped[str | None] = mapped_column(String(128))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class NormalizationRule(Base):
    """How the numbers of messages from (incoming) or to (outgoing) an
    external line (NULL: every line) are rewritten: the `fields` listed, by
    `method` (`pattern`: `match` regex and `replacement`; or a number format)."""

    __tablename__ = "normalization_rules"
    __table_args__ = (
        CheckConstraint("direction IN ('incoming', 'outgoing')", name="direction"),
        CheckConstraint("method IN ('pattern', 'e164', 'e164_digits', 'national')", name="method"),
        CheckConstraint("priority >= 0", name="priority"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(Integer)
    direction: Mapped[str] = mapped_column(String(16))
    external_line_id: Mapped[int | None] = mapped_column(
        ForeignKey("external_lines.id", ondelete="RESTRICT"), index=True
    )
    # Which of request_uri, from, to, pai, display_name the rule changes.
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    method: Mapped[str] = mapped_column(String(16))
    match: Mapped[str | None] = mapped_column(String(500))
    replacement: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class IvrMenu(Base):
    """A voice menu a routing rule (action `ivr`) sends incoming calls to:
    a greeting (`audio`: the uploaded file `greeting_file`, kept converted
    under the data directory; `text`: `greeting_text` spoken by espeak-ng),
    then the caller's digit decides where the call goes.

    Destinations (`options` by digit, `on_timeout`, `on_invalid`) are JSON
    objects `{"type": ..., "target": ...}`, checked by `callbridge.pbx.ivr`;
    a target names an internal line's number, a number dialled out, or
    another menu's id, so none is a foreign key: apply checks them all.
    """

    __tablename__ = "ivr_menus"
    __table_args__ = (
        CheckConstraint("greeting_kind IN ('audio', 'text')", name="greeting_kind"),
        CheckConstraint("timeout_seconds >= 1 AND timeout_seconds <= 60", name="timeout_seconds"),
        CheckConstraint("repeats >= 0 AND repeats <= 5", name="repeats"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    greeting_kind: Mapped[str] = mapped_column(String(8))
    greeting_text: Mapped[str | None] = mapped_column(String(1000), default=None)
    # The converted upload's name under data_dir/ivr-greetings (without .wav).
    greeting_file: Mapped[str | None] = mapped_column(String(64), default=None)
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=5)
    repeats: Mapped[int] = mapped_column(Integer, default=2)
    dial_by_extension: Mapped[bool] = mapped_column(Boolean, default=False)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    on_timeout: Mapped[dict[str, Any]] = mapped_column(JSON)
    on_invalid: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class ConfigVersion(Base):
    """One applied configuration: the whole set of internal lines, external
    lines, IVR menus, routing and normalization rules as it was swapped in, so any
    version can be applied again (rollback). It holds no credentials (SIP
    HA1s, provider passwords): those are always the current ones."""

    __tablename__ = "config_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    applied_by: Mapped[str | None] = mapped_column(String(64))
    # "apply", "start" (the first start), or "rollback to N".
    source: Mapped[str] = mapped_column(String(64))
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)


# ------------------------------------------------------------------- CRM

CardType = Literal["contact", "account", "lead"]
CARD_TYPES: tuple[CardType, ...] = ("contact", "account", "lead")
PhoneType = Literal["mobile", "work", "home", "fax", "other"]
PHONE_TYPES: tuple[PhoneType, ...] = ("mobile", "work", "home", "fax", "other")
LeadStatus = Literal["new", "working", "qualified", "lost"]
LEAD_STATUSES: tuple[LeadStatus, ...] = ("new", "working", "qualified", "lost")


class Account(Base):
    """A company the team works with."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    website: Mapped[str | None] = mapped_column(String(500))
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("employees.id", ondelete="SET NULL"), index=True
    )
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Contact(Base):
    """A person; may belong to an account (`company` is free text for one
    that is not an account)."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    company: Mapped[str | None] = mapped_column(String(200))
    position: Mapped[str | None] = mapped_column(String(200))
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("employees.id", ondelete="SET NULL"), index=True
    )
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Lead(Base):
    """A prospect not yet qualified; qualifying it makes (or names) a contact."""

    __tablename__ = "leads"
    __table_args__ = (
        CheckConstraint("status IN ('new', 'working', 'qualified', 'lost')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    company: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="new")
    # The contact the lead was qualified into.
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True
    )
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("employees.id", ondelete="SET NULL"), index=True
    )
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Phone(Base):
    """One phone number of one card: as typed, and its keys in the phone
    index — E.164 when it reads as a number, and its last digits for numbers
    that arrive in a format that does not (`crm.phones`). Exactly one of
    contact_id, account_id, lead_id is set."""

    __tablename__ = "phones"
    __table_args__ = (
        CheckConstraint(
            "(CASE WHEN contact_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN account_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN lead_id IS NULL THEN 0 ELSE 1 END) = 1",
            name="one_card",
        ),
        CheckConstraint("type IN ('mobile', 'work', 'home', 'fax', 'other')", name="type"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    lead_id: Mapped[int | None] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(16), default="mobile")
    number: Mapped[str] = mapped_column(String(64))
    e164: Mapped[str | None] = mapped_column(String(16), index=True)
    tail: Mapped[str] = mapped_column(String(8), index=True)


class Note(Base):
    """A note an employee wrote on a call, on a card, or on both."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    call_id: Mapped[str | None] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    lead_id: Mapped[int | None] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
