"""Prepare a FastCMS database for the benchmark the documented way: a command, then the HTTP API.

1. `create_superuser(env)`, before any server starts: `manage.py createsuperuser --noinput` with
   DJANGO_SUPERUSER_USERNAME/PASSWORD/EMAIL in its environment (a user of that name already there
   is fine: the database may be an old one).
2. `setup_over_http(base_url, names)`, against a started server: `POST /api/v1/auth/token` with
   the username and password gives the token; then every collection in `names` that
   `GET /api/v1/collections/<name>/` does not find is created with `POST /api/v1/collections/`,
   with the fields in FIELDS, readable by everyone (list and view rule `""`) and writable by staff
   only. Returns the token.

No Django import here: the bench sees FastCMS only from the outside, like any client.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

FIELDS: list[dict[str, Any]] = [
    {"name": "seq", "type": "number", "options": {"integer": True}},
    {"name": "sent_at", "type": "number"},
    {"name": "topic", "type": "text"},
    {"name": "payload", "type": "text"},
]
USERNAME = "bench"
PASSWORD = "bench-password-not-secret"  # noqa: S105 - a throwaway user on a throwaway database
EMAIL = "bench@example.com"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300.0


class SetupError(Exception):
    """A set-up step failed; the message says which and what the server or command answered."""


def server_environment(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a FastCMS server (and its `manage.py` commands) on `database_url`: this
    process's environment, DEBUG off, no `.env`, quiet logs, then `extra`."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "fastcms.settings",
        "FASTCMS_ENV_FILE": "/nonexistent",
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": "bench",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def prepare_postgres(env: dict[str, str], cwd: Path = PROJECT_ROOT) -> None:
    """Create `env`'s PostgreSQL database if missing, migrate it and make the bench user."""
    import psycopg

    url = env["DATABASE_URL"]
    server, name = url.rsplit("/", 1)
    with psycopg.connect(server + "/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=cwd, env=env, check=True)
    create_superuser(env, cwd=cwd)


def create_superuser(env: dict[str, str], cwd: Path = PROJECT_ROOT, timeout: float = TIMEOUT) -> None:
    """`manage.py createsuperuser --noinput` for USERNAME in `env` (the server's database); idempotent."""
    command = [sys.executable, "manage.py", "createsuperuser", "--noinput"]
    superuser = {"DJANGO_SUPERUSER_USERNAME": USERNAME, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env={**env, **superuser, "DJANGO_SUPERUSER_EMAIL": EMAIL},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"createsuperuser did not finish within {timeout:.0f} s") from exc
    if done.returncode != 0 and "already taken" not in done.stderr:
        raise SetupError(f"createsuperuser failed ({done.returncode}):\n{done.stderr[-2000:]}")
    if done.returncode != 0:  # made by an earlier run, perhaps with another password: set this one
        reset = (
            "from django.contrib.auth import get_user_model\n"
            f"user = get_user_model().objects.get(username={USERNAME!r})\n"
            f"user.set_password({PASSWORD!r})\n"
            "user.is_staff = user.is_superuser = user.is_active = True\n"
            "user.save()\n"
        )
        again = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", reset],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if again.returncode != 0:
            raise SetupError(f"could not reset the password of {USERNAME}:\n{again.stderr[-2000:]}")


def sign_in(client: httpx.Client) -> str:
    """`POST /api/v1/auth/token` with USERNAME and PASSWORD; the token."""
    response = client.post("/api/v1/auth/token", json={"username": USERNAME, "password": PASSWORD})
    if response.status_code != 200:
        raise SetupError(f"POST /api/v1/auth/token answered {response.status_code}: {response.text[:300]}")
    return response.json()["token"]


def ensure_collection(client: httpx.Client, token: str, name: str) -> None:
    """Create collection `name` (FIELDS, list and view rule `""`) unless it exists."""
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    path = f"/api/v1/collections/{name}/"
    found = client.get(path, headers=headers)
    if found.status_code == 200:
        return
    if found.status_code != 404:
        raise SetupError(f"GET {path} answered {found.status_code}: {found.text[:300]}")
    body = {"name": name, "fields": FIELDS, "list_rule": "", "view_rule": ""}
    created = client.post("/api/v1/collections/", json=body, headers=headers)
    if created.status_code == 201:
        return
    # 400 or 409: made meanwhile by someone else, which is fine if it is there now.
    if created.status_code in (400, 409) and client.get(path, headers=headers).status_code == 200:
        return
    raise SetupError(f"POST /api/v1/collections/ ({name}) answered {created.status_code}: {created.text[:300]}")


def setup_over_http(base_url: str, names: list[str], timeout: float = 30.0) -> str:
    """Sign in as USERNAME on the server at `base_url` and make sure the collections `names` exist; the token."""
    try:
        with httpx.Client(base_url=base_url, timeout=timeout) as client:
            token = sign_in(client)
            for name in names:
                ensure_collection(client, token, name)
            return token
    except httpx.HTTPError as exc:
        raise SetupError(f"set-up over HTTP failed: {type(exc).__name__}: {exc}") from exc
