"""Settings of a callbridge process, read from `CALLBRIDGE_*` environment
variables (and optionally a TOML file named by `CALLBRIDGE_CONFIG_FILE`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

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
    tcp_idle_timeout: float = Field(300.0, gt=0)
    user_agent: str = "callbridge"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

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
