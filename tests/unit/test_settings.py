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
    ],
)
def test_bad_values_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=field):
        Settings()
