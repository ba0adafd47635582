"""The `callbridge` command: a bad setting is one line a person can act on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")},
        "CALLBRIDGE_DATA_DIR": str(tmp_path),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "callbridge", "serve"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("md4", "'md4' is not one of SHA-256, MD5 (comma separated, in order)"),
        ("MD5;SHA-256", "'MD5;SHA-256' is not one of SHA-256, MD5 (comma separated, in order)"),
    ],
)
def test_a_bad_setting_is_one_line_naming_variable_value_and_what_is_allowed(
    tmp_path: Path, value: str, problem: str
) -> None:
    done = serve(tmp_path, CALLBRIDGE_SIP_DIGEST_ALGORITHMS=value)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f'callbridge: CALLBRIDGE_SIP_DIGEST_ALGORITHMS="{value}": {problem}'
    ]
    assert not (tmp_path / "callbridge.db").exists()  # refused before anything started


def test_each_bad_setting_gets_its_line(tmp_path: Path) -> None:
    done = serve(
        tmp_path,
        CALLBRIDGE_SIP_PORT="70000",
        CALLBRIDGE_LOG_LEVEL="loud",
        CALLBRIDGE_MEDIA_ALLOWED_NETWORKS="internet",
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 3, done.stderr
    assert lines[0] == (
        'callbridge: CALLBRIDGE_SIP_PORT="70000": Input should be less than or equal to 65535'
    )
    assert lines[1].startswith('callbridge: CALLBRIDGE_LOG_LEVEL="loud": Input should be ')
    assert lines[2].startswith('callbridge: CALLBRIDGE_MEDIA_ALLOWED_NETWORKS="internet": ')
    assert "Traceback" not in done.stderr


def test_a_bad_setting_in_the_config_file_is_named_there(tmp_path: Path) -> None:
    config = tmp_path / "callbridge.toml"
    config.write_text('sip_digest_algorithms = "sha1"\n')
    done = serve(tmp_path, CALLBRIDGE_CONFIG_FILE=str(config))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f'callbridge: sip_digest_algorithms in {config}="sha1": '
        "'sha1' is not one of SHA-256, MD5 (comma separated, in order)"
    ]


def test_a_control_character_in_a_bad_value_is_shown_escaped(tmp_path: Path) -> None:
    done = serve(tmp_path, CALLBRIDGE_SIP_DIGEST_ALGORITHMS="md5\x1b[31m")
    assert done.returncode == 2
    assert "\x1b" not in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_a_config_file_that_is_no_toml_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "callbridge.toml"
    config.write_text("sip_port = \n")
    done = serve(tmp_path, CALLBRIDGE_CONFIG_FILE=str(config))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f'callbridge: CALLBRIDGE_CONFIG_FILE="{config}": Invalid value (at line 1, column 12)'
    ]
