"""Settings for a server with Django's GZipMiddleware on (the stream must stay uncompressed)."""

from tests.server_settings import *  # noqa: F403
from tests.server_settings import MIDDLEWARE

MIDDLEWARE = ["django.middleware.gzip.GZipMiddleware", *MIDDLEWARE]
