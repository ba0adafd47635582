"""Settings come from CALLBRIDGE_* variables, or a TOML file they name."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from callbridge.settings import Settings


def test_defaults_start_a_pbx_on_the_standard_port(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CALLBRIDGE_SIP_HOST", "CALLBRIDGE_SIP_PORT", "CALLBRIDGE_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.sip_host, settings.sip_port) == ("0.0.0.0", 5060)
    assert settings.log_level == "info"
    assert settings.log_sip_messages is False
    assert settings.media_allowed_networks == "public"  # private ranges: the admin's choice


def test_environment_variables_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBRIDGE_SIP_HOST", "127.0.0.1")
    monkeypatch.setenv("CALLBRIDGE_SIP_PORT", "5070")
    monkeypatch.setenv("CALLBRIDGE_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("CALLBRIDGE_LOG_SIP_MESSAGES", "true")
    settings = Settings()
    assert (settings.sip_host, settings.sip_port) == ("127.0.0.1", 5070)
    assert settings.log_level == "debug"
    assert settings.log_sip_messages is True


def test_toml_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "callbridge.toml"
    config.write_text('sip_port = 5080\nlog_format = "json"\nuser_agent = "pbx-1"\n')
    monkeypatch.setenv("CALLBRIDGE_CONFIG_FILE", str(config))
    monkeypatch.setenv("CALLBRIDGE_SIP_PORT", "5090")
    settings = Settings()
    assert settings.sip_port == 5090
    assert settings.log_format == "json"
    assert settings.user_agent == "pbx-1"


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("CALLBRIDGE_SIP_PORT", "70000", "sip_port"),
        ("CALLBRIDGE_LOG_LEVEL", "loud", "log_level"),
        ("CALLBRIDGE_MAX_MESSAGE_SIZE", "10", "max_message_size"),
        ("CALLBRIDGE_MEDIA_ALLOWED_NETWORKS", "public,10.0.0.0/33", "media_allowed_networks"),
        ("CALLBRIDGE_MEDIA_ALLOWED_NETWORKS", "internet", "media_allowed_networks"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=field):
        Settings()


def test_the_database_defaults_to_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=None)
    assert settings.effective_database_url() == (
        f"sqlite+aiosqlite:///{(tmp_path / 'callbridge.db').resolve()}"
    )
    url = "postgresql+asyncpg://pbx@db.example.org/pbx"
    assert Settings(database_url=url).effective_database_url() == url


def test_the_public_address_follows_the_sip_host_unless_set() -> None:
    assert Settings(sip_host="192.0.2.7").effective_public_address() == "192.0.2.7"
    own = Settings(sip_host="0.0.0.0", public_address=None).effective_public_address()
    assert own and own != "0.0.0.0"
    assert Settings(public_address="203.0.113.9").effective_public_address() == "203.0.113.9"


def test_the_admin_password_is_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBRIDGE_ADMIN_PASSWORD", "hunter22-secret")
    settings = Settings()
    assert settings.admin_password is not None
    assert settings.admin_password.get_secret_value() == "hunter22-secret"
    assert "hunter22-secret" not in repr(settings)


def test_http_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CALLBRIDGE_HTTP_HOST", "CALLBRIDGE_HTTP_PORT", "CALLBRIDGE_AUTH_TOKEN_TTL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", 8000)
    assert settings.auth_token_ttl == 12 * 3600
    assert settings.sip_realm == "callbridge"


def test_no_proxy_is_trusted_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLBRIDGE_HTTP_TRUSTED_PROXIES", raising=False)
    assert Settings().trusted_proxies() == []
    named = Settings(http_trusted_proxies=" 10.0.0.5, 192.0.2.0/24,::1 ")
    assert named.trusted_proxies() == ["10.0.0.5", "192.0.2.0/24", "::1"]


@pytest.mark.parametrize("value", ["*", "proxy.example", "10.0.0.0/33", "10.0.0.1,oops"])
def test_a_trusted_proxy_must_be_an_address_or_network(value: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or network"):
        Settings(http_trusted_proxies=value)


def test_md5_alone_is_offered_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # Most desk phones know only MD5; baresip 1.0 fails on any SHA-256 challenge.
    monkeypatch.delenv("CALLBRIDGE_SIP_DIGEST_ALGORITHMS", raising=False)
    assert Settings().sip_digest_algorithms == "MD5"


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("sha-256, md5", "SHA-256,MD5"),
        ("SHA-256, MD5", "SHA-256,MD5"),
        ("md5", "MD5"),
        (" Sha-256 ", "SHA-256"),
    ],
)
def test_digest_algorithms_are_read_as_people_type_them_and_keep_their_order(
    monkeypatch: pytest.MonkeyPatch, value: str, kept: str
) -> None:
    monkeypatch.setenv("CALLBRIDGE_SIP_DIGEST_ALGORITHMS", value)
    assert Settings().sip_digest_algorithms == kept


@pytest.mark.parametrize("value", ["md4", "MD5;SHA-256", "", "MD5,MD5", "SHA-512-256"])
def test_unknown_digest_algorithms_are_refused_saying_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CALLBRIDGE_SIP_DIGEST_ALGORITHMS", value)
    with pytest.raises(ValidationError, match="sip_digest_algorithms") as refused:
        Settings()
    assert "SHA-256, MD5" in str(refused.value) or "listed twice" in str(refused.value)


def test_recording_is_on_and_its_files_live_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CALLBRIDGE_RECORDING", "CALLBRIDGE_RECORDINGS_DIR", "CALLBRIDGE_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path)
    assert settings.recording is True and settings.recording_retention_days == 0
    assert settings.effective_recordings_dir() == (tmp_path / "recordings").resolve()
    monkeypatch.setenv("CALLBRIDGE_RECORDINGS_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("CALLBRIDGE_RECORDING", "false")
    monkeypatch.setenv("CALLBRIDGE_RECORDING_RETENTION_DAYS", "90")
    settings = Settings(data_dir=tmp_path)
    assert settings.effective_recordings_dir() == (tmp_path / "elsewhere").resolve()
    assert settings.recording is False and settings.recording_retention_days == 90
    monkeypatch.setenv("CALLBRIDGE_RECORDING_RETENTION_DAYS", "-1")
    with pytest.raises(ValidationError):
        Settings()
