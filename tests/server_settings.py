"""Settings of the servers the tests start: the product's, able to check the tests' fast hashes.

Static files are served from the apps under their plain names, whether or not `collectstatic`
ran in this checkout (`make run` does): a `staticfiles/` directory left behind must not change
what the tests see.
"""

import tempfile
from pathlib import Path

from fastcms.settings import *  # noqa: F403
from fastcms.settings import MIDDLEWARE as DEFAULT_MIDDLEWARE
from fastcms.settings import PASSWORD_HASHERS as DEFAULT_HASHERS

PASSWORD_HASHERS = [*DEFAULT_HASHERS, "django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT = Path(tempfile.gettempdir()) / "fastcms-tests-no-static-root"  # never created
WHITENOISE_USE_FINDERS = True
MIDDLEWARE = [*DEFAULT_MIDDLEWARE, "tests.server_middleware.ForgetContentTypes"]
