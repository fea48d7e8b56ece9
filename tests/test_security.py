"""Abuse and deployment: the sign-in throttle, production settings, tokens kept out of logs."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from tests.conftest import token_of
from tests.live import Server, SSEClient

ROOT = Path(__file__).resolve().parent.parent


def sign_in(client: APIClient, username: str, password: str, address: str) -> Any:
    return client.post(
        "/api/v1/auth/token", {"username": username, "password": password}, format="json", REMOTE_ADDR=address
    )


@pytest.mark.django_db
def test_failed_sign_ins_from_one_address_are_throttled(alice: User) -> None:
    client, address = APIClient(), "10.20.30.40"
    for attempt in range(10):
        assert sign_in(client, f"nobody-{attempt}", "guess", address).status_code == 400
    refused = sign_in(client, "alice", "alice-pass", address)  # even the right password, from there
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert int(refused["Retry-After"]) > 0
    assert sign_in(client, "alice", "alice-pass", "10.20.30.41").status_code == 200  # others are not


@pytest.mark.django_db
def test_failed_sign_ins_for_one_username_are_throttled_from_any_address(alice: User, bob: User) -> None:
    client = APIClient()
    for attempt in range(10):
        assert sign_in(client, "alice", "wrong", f"10.1.0.{attempt}").status_code == 400
    assert sign_in(client, "ALICE", "alice-pass", "10.1.0.99").status_code == 429  # case does not escape it
    assert sign_in(client, "bob", "bob-pass", "10.1.0.99").status_code == 200


@pytest.mark.django_db
def test_successful_sign_ins_are_never_throttled(alice: User) -> None:
    client = APIClient()
    for _ in range(15):
        assert sign_in(client, "alice", "alice-pass", "10.3.0.1").status_code == 200


def test_a_forwarded_for_header_does_not_change_the_counted_address(live: Server, alice: User) -> None:
    name = f"guess-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=live.url, transport=httpx.HTTPTransport(local_address="127.0.0.77")) as client:
        for attempt in range(10):
            response = client.post(
                "/api/v1/auth/token",
                json={"username": f"{name}-{attempt}", "password": "x"},
                headers={"X-Forwarded-For": f"203.0.113.{attempt}"},
            )
            assert response.status_code == 400, response.text
        refused = client.post(
            "/api/v1/auth/token",
            json={"username": "alice", "password": "alice-pass"},
            headers={"X-Forwarded-For": "198.51.100.1"},
        )
    assert refused.status_code == 429
    assert refused.headers["Retry-After"]
    assert refused.json()["code"] == "throttled"


def test_percent_encoded_token_parameters_never_reach_the_logs(live: Server, staff: User) -> None:
    token = token_of(staff)
    spelled = SSEClient(f"{live.url}/api/v1/realtime?%74oken={token}")  # Django reads it as `token`
    assert spelled.status == 200
    assert spelled.next().event == "connected"
    spelled.close()
    mixed = httpx.get(f"{live.url}/api/v1/presence?t%6Fken={token}&x=1")
    assert mixed.status_code == 200
    output = live.output()
    assert "?%74oken=***" in output
    assert token not in output


def _readme_production_exports() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Running in production", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    exports = [line for line in block.splitlines() if line.startswith("export ")]
    assert any("SECURE_HSTS_SECONDS" in line for line in exports), exports
    return "\n".join(exports)


def test_readme_production_example_passes_the_deploy_check(tmp_path: Path) -> None:
    script = f"{_readme_production_exports()}\nexec {ROOT / '.venv/bin/python'} manage.py check --deploy\n"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FASTCMS_", "DJANGO_", "SECURE_", "DATABASE", "REDIS", "DEBUG", "SECRET"))
    }
    env.update(FASTCMS_ENV_FILE=str(tmp_path / "absent.env"), DJANGO_SETTINGS_MODULE="fastcms.settings")
    result = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr
