"""`manage.py runserver` on ASGI (uvicorn), so streams work in development.

Django's runserver is a WSGI server, which buffers an endless stream forever. This one keeps its
command line, system checks and auto-reload, and serves `settings.ASGI_APPLICATION` with uvicorn;
static files are served by WhiteNoise from the apps when DEBUG is on.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from django.conf import settings
from django.core.management.commands.runserver import Command as DjangoRunserver
from django.db import connections
from django.utils import autoreload
from django.utils.module_loading import import_string


class Command(DjangoRunserver):
    help = "Starts a development web server (ASGI, with auto-reload) that serves streams."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument("--log-level", default="info", help="uvicorn's log level (default: info).")

    def inner_run(self, *args: Any, **options: Any) -> None:
        import uvicorn

        autoreload.raise_last_exception()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            check_kwargs = super().get_check_kwargs(options)
            check_kwargs["display_num_errors"] = True
            self.check(**check_kwargs)
        self.check_migrations()
        for conn in connections.all(initialized_only=True):
            conn.close()
        os.environ.setdefault("DJANGO_RUNSERVER_HIDE_WARNING", "false")
        self.on_bind(self.port)
        config = uvicorn.Config(
            import_string(settings.ASGI_APPLICATION),
            host=self.addr,
            port=int(self.port),
            lifespan="on",
            log_level=options["log_level"],
            timeout_graceful_shutdown=max(1, int(settings.FASTCMS_SSE_SHUTDOWN_TIMEOUT)),
            log_config=None,
        )
        try:
            uvicorn.Server(config).run()
        except OSError as exc:
            messages = {
                errno.EACCES: "You don't have permission to access that port.",
                errno.EADDRINUSE: "That port is already in use.",
                errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
            }
            self.stderr.write(f"Error: {messages.get(exc.errno, exc)}")
            os._exit(1)
        except KeyboardInterrupt:
            pass
