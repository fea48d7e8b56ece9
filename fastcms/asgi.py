"""ASGI entry point: `uvicorn fastcms.asgi:application`."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fastcms.settings")

from realtime.asgi import Application

application = Application()
