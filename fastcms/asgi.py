"""ASGI entry point: `uvicorn fastcms.asgi:application`."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fastcms.settings")

from realtime.asgi import Application  # noqa: E402  (needs the settings module set above)

application = Application()
