"""FastCMS settings, read from the environment (and an optional `.env` file) with django-environ.

Every setting a deployment changes is an environment variable; README.md lists them.
"""

import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Variables already in the environment win over the file (`make run` writes .env for development).
environ.Env.read_env(env.str("FASTCMS_ENV_FILE", default=str(BASE_DIR / ".env")), overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off: export SECRET_KEY=<a long random string>, "
            "or DEBUG=true for local development (`make run` writes both to .env)."
        )
    SECRET_KEY = "insecure-development-key-only-used-when-DEBUG-is-on"  # noqa: S105

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS in production: off by default so `make run` works on plain http://127.0.0.1.
# Behind a TLS-terminating proxy, set SECURE_PROXY_SSL_HEADER=true (it sends X-Forwarded-Proto).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("SECURE_PROXY_SSL_HEADER", False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "realtime",  # first: its `runserver` (ASGI, for streams) replaces the WSGI one
    "fastcms.apps.AdminConfig",  # django.contrib.admin, with records listed per collection
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "collections_app",
    "presence",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "fastcms.middleware.ApiInputMiddleware",  # after CORS, so browsers can read its errors
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "realtime.middleware.LastEventIdMiddleware",
]

# The SSE endpoints run only these (natively async) middleware; see realtime.handler.StreamHandler.
FASTCMS_STREAM_MIDDLEWARE = ["corsheaders.middleware.CorsMiddleware"]

ROOT_URLCONF = "fastcms.urls"
CSRF_FAILURE_VIEW = "fastcms.errors.csrf_failure"
# Request bodies above this many bytes are refused (413); records are JSON, so 1 MiB is generous.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)
ASGI_APPLICATION = "fastcms.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "fastcms" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the writer; IMMEDIATE transactions take the write lock up front,
    # so concurrent writers wait (up to the timeout) instead of failing with "database is locked".
    # fastcms.sqlite3 is Django's backend with the writers of a worker queueing on a lock instead
    # of SQLite's sleeping retries (see its docstring).
    DATABASES["default"]["ENGINE"] = "fastcms.sqlite3"
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
# Requests run on a pool of FASTCMS_REQUEST_THREADS long-lived threads per worker (fastcms.pooled),
# each keeping its database connection between requests for this many seconds (checked before
# reuse), so a worker holds at most that many connections.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
FASTCMS_REQUEST_THREADS = env.int("FASTCMS_REQUEST_THREADS", default=16)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "fastcms" / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "fastcms.storage.StaticFilesStorage"},
}

# Served from the apps too, so pages keep their assets if `collectstatic` has not run.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at: ")  # WhiteNoise, before collectstatic

CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_EXPOSE_HEADERS = ["X-Last-Event-ID"]
CORS_ALLOW_HEADERS = ["accept", "authorization", "content-type", "last-event-id", "x-csrftoken"]

REDIS_URL = env.str("REDIS_URL", default="") or None
FASTCMS_REDIS_PREFIX = env.str("FASTCMS_REDIS_PREFIX", default="fastcms")  # keys: <prefix>:events, ...

# The cache holds the sign-in throttle's counts: shared by every worker when Redis is configured,
# with short timeouts so a Redis that does not answer never holds up a request for long.
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{FASTCMS_REDIS_PREFIX}:cache",
            "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "collections_app.authentication.TokenAuthentication",
        "collections_app.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "collections_app.browsable.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "collections_app.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "collections_app.negotiation.RememberingContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "collections_app.pagination.PageNumberPagination",
    "PAGE_SIZE": 30,
    "EXCEPTION_HANDLER": "fastcms.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Failed sign-ins per minute, per username and per client address (collections_app.throttling).
    "DEFAULT_THROTTLE_RATES": {"login_failures": f"{env.int('FASTCMS_LOGIN_FAILURES_PER_MINUTE', default=10)}/min"},
    # The client address is REMOTE_ADDR, never a client-sent X-Forwarded-For: behind a proxy, run
    # uvicorn with --proxy-headers (and --forwarded-allow-ips) so REMOTE_ADDR is the real client.
    "NUM_PROXIES": 0,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "FastCMS API",
    "DESCRIPTION": "Collections, records, live queries over Server-Sent Events, and presence.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema is the caller's: what its rules let it do. The docs page reloads it on "Authorize".
    "SERVE_PUBLIC": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "/favicon.ico",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
    # Each collection's records get operations and schemas from its fields (at every request).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "collections_app.openapi.add_collection_operations",
    ],
    "APPEND_PATHS": {},  # filled below with the SSE and presence endpoints
}

from realtime.openapi import paths as realtime_paths  # noqa: E402  (plain data, no Django import)

SPECTACULAR_SETTINGS["APPEND_PATHS"] = realtime_paths()

# Real-time and presence (seconds may be fractional). The apps read them at use, with their own
# defaults, through `realtime.conf` and `presence.conf`.
# The backends, as dotted paths; unset: Redis when REDIS_URL is set, else in-process.
FASTCMS_EVENT_BACKEND = env.str("FASTCMS_EVENT_BACKEND", default="") or None
FASTCMS_PRESENCE_BACKEND = env.str("FASTCMS_PRESENCE_BACKEND", default="") or None
FASTCMS_SSE_HEARTBEAT = env.float("FASTCMS_SSE_HEARTBEAT", default=15.0)
FASTCMS_SSE_RETRY_MS = env.int("FASTCMS_SSE_RETRY_MS", default=3000)
FASTCMS_SSE_QUEUE_SIZE = env.int("FASTCMS_SSE_QUEUE_SIZE", default=1000)
FASTCMS_SSE_MAX_AGE = env.float("FASTCMS_SSE_MAX_AGE", default=1800.0)
FASTCMS_SSE_MAX_CONNECTIONS = env.int("FASTCMS_SSE_MAX_CONNECTIONS", default=10000)
FASTCMS_SSE_MAX_PER_CLIENT = env.int("FASTCMS_SSE_MAX_PER_CLIENT", default=50)
FASTCMS_SSE_SHUTDOWN_TIMEOUT = env.float("FASTCMS_SSE_SHUTDOWN_TIMEOUT", default=5.0)
FASTCMS_HISTORY_SIZE = env.int("FASTCMS_HISTORY_SIZE", default=10000)
FASTCMS_HISTORY_SECONDS = env.float("FASTCMS_HISTORY_SECONDS", default=600.0)
FASTCMS_STREAM_TOKEN_SECONDS = env.float("FASTCMS_STREAM_TOKEN_SECONDS", default=300.0)
FASTCMS_HISTORY_BYTES = env.int("FASTCMS_HISTORY_BYTES", default=64 * 1024 * 1024)
FASTCMS_SSE_OPENS_PER_MINUTE = env.int("FASTCMS_SSE_OPENS_PER_MINUTE", default=300)
FASTCMS_PRESENCE_ANONYMOUS = env.bool("FASTCMS_PRESENCE_ANONYMOUS", default=True)
FASTCMS_PRESENCE_GRACE = env.float("FASTCMS_PRESENCE_GRACE", default=5.0)
FASTCMS_PRESENCE_TTL = env.float("FASTCMS_PRESENCE_TTL", default=30.0)
# Streams find collections in memory; changes made by processes that do not share the bus (no
# REDIS_URL) are seen after at most this many seconds. 0: read the database for every stream.
FASTCMS_COLLECTIONS_REFRESH = env.float("FASTCMS_COLLECTIONS_REFRESH", default=5.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_tokens": {"()": "fastcms.logging.RedactTokensFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# The browsable API's "Log in" (DRF's login view) returns here when no `next` is given.
LOGIN_REDIRECT_URL = "/api/v1/"
