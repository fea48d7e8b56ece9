"""Test settings: the project's settings with a fast password hasher and test-friendly hosts."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key")
os.environ["DEBUG"] = "false"

from fastcms.settings import *  # noqa: F403
from fastcms.settings import BASE_DIR, DATABASES

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # servers verify these too
ALLOWED_HOSTS = ["*"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory, so servers started by the tests in other processes share it.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3")}
# In this process, threads that touch the database (stream sign-ins on the auth pool, tests' own
# threads) release their connections after use, so the test database can be dropped at the end;
# the servers the tests start keep the product's persistent connections.
DATABASES["default"]["CONN_MAX_AGE"] = 0
# Serve static files from the apps, never from what `collectstatic` left in this checkout.
STATIC_ROOT = Path(tempfile.gettempdir()) / "fastcms-tests-no-static-root"  # never created
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# Each test session keeps its Redis keys apart (its servers get the same prefix).
FASTCMS_REDIS_PREFIX = f"fastcms-test-{os.getpid()}"
# In-process tests get a private cache, emptied before each test (tests/conftest.py); the servers
# the tests start keep the product's (Redis when REDIS_URL is set).
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
