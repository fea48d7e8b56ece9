"""Project-wide promises: migrations, OpenAPI schema and offline docs, settings, JSON errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_no_model_change_lacks_a_migration() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
def test_openapi_schema_lists_the_api(staff_api: APIClient) -> None:
    response = staff_api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for path in (
        "/api/v1/collections/",
        "/api/v1/collections/{name}/",
        "/api/v1/collections/{collection_name}/records/",
        "/api/v1/collections/{collection_name}/records/{id}/",
        "/api/v1/auth/token",
        "/api/v1/realtime",
        "/api/v1/realtime/{name}",
        "/api/v1/presence",
    ):
        assert any(p.rstrip("/") == path.rstrip("/") for p in schema["paths"]), (path, list(schema["paths"]))


@pytest.mark.django_db
def test_api_docs_load_no_asset_from_the_internet(anon: APIClient) -> None:
    response = anon.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
    assert assets, html
    assert not [a for a in assets if re.match(r"(https?:)?//", a)], assets
    for asset in assets:
        if asset.startswith("/static/"):
            asset_response = anon.get(asset)
            assert asset_response.status_code == 200, asset
            asset_response.close()


@pytest.mark.django_db
def test_browsable_api_renders_html(staff_api: APIClient, products: object) -> None:
    for url in ("/api/v1/", "/api/v1/collections/", "/api/v1/collections/products/records/"):
        response = staff_api.get(url, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, url
        assert b"<html" in response.content


@pytest.mark.django_db
def test_unknown_api_paths_are_json_404(anon: APIClient) -> None:
    response = anon.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_secret_key_is_required_when_debug_is_off(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DEBUG="false",
        DJANGO_SETTINGS_MODULE="fastcms.settings",
        DATABASE_URL=f"sqlite:///{tmp_path}/x.sqlite3",
        FASTCMS_ENV_FILE=str(tmp_path / "no.env"),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_settings_come_from_the_environment() -> None:
    code = (
        "from django.conf import settings as s; "
        "print(s.FASTCMS_SSE_HEARTBEAT, s.FASTCMS_PRESENCE_ANONYMOUS, s.ALLOWED_HOSTS, "
        "s.DATABASES['default']['OPTIONS'])"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "fastcms.settings",
        "DEBUG": "false",
        "SECRET_KEY": "x",
        "FASTCMS_SSE_HEARTBEAT": "0.5",
        "FASTCMS_PRESENCE_ANONYMOUS": "false",
        "ALLOWED_HOSTS": "a.example,b.example",
        "DATABASE_URL": "sqlite:////tmp/fastcms-settings-test.sqlite3",
    }
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("0.5 False ['a.example', 'b.example']")
    assert "'transaction_mode': 'IMMEDIATE'" in result.stdout
    assert "journal_mode=WAL" in result.stdout


@pytest.mark.django_db
def test_sqlite_runs_in_wal_mode() -> None:
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


@pytest.mark.django_db
def test_readme_collection_example_keeps_records_owned_by_their_creator(
    staff_api: APIClient, alice_api: APIClient, alice: Any, bob: Any
) -> None:
    readme = (ROOT / "README.md").read_text()
    body = re.search(r"curl -X POST http://127.0.0.1:8000/api/v1/collections/ \\\n.*?-d '(\{.*?\})'\n", readme, re.S)
    assert body, "the README's collection example moved"
    assert staff_api.post("/api/v1/collections/", json.loads(body[1]), format="json").status_code == 201
    records = "/api/v1/collections/articles/records/"
    theirs = alice_api.post(records, {"title": "Not mine", "owner": str(bob.pk)}, format="json")
    assert theirs.status_code == 403
    mine = alice_api.post(records, {"title": "Mine", "owner": str(alice.pk)}, format="json")
    assert mine.status_code == 201
