"""Keep API tokens out of logs: `token=<value>` in any message or argument becomes `token=***`.

The parameter name is compared after percent-decoding, as Django's `QueryDict` decodes it, so
`?%74oken=<key>` (which authenticates exactly like `?token=<key>`) is redacted too.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

SECRET_PARAMETERS = frozenset({"token", "access_token"})
# A `name=value` pair of a query string (or of a form body) inside any text.
PARAMETER_IN_TEXT = re.compile(r"(?P<lead>^|[?&;\s])(?P<name>[^=&;\s?#\"']+)=(?P<value>[^&;\s#\"']*)")


def _redact_pair(match: re.Match[str]) -> str:
    name = match["name"]
    if unquote_plus(name).strip().lower() not in SECRET_PARAMETERS or not match["value"]:
        return match[0]
    return f"{match['lead']}{name}=***"


def redact(text: str) -> str:
    """`text` with the value of every token parameter replaced by `***`, however it is spelled."""
    return PARAMETER_IN_TEXT.sub(_redact_pair, text) if "=" in text else text


def _redact_value(value: object) -> object:
    return redact(value) if isinstance(value, str) else value


class RedactTokensFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_value(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_value(value) for key, value in record.args.items()}
        return True


SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error", "django.request", "django.server")


class AbandonedStreamFilter(logging.Filter):
    """uvicorn reports a response cut short as an error; for a stream dropped because its client
    stopped reading (a bounded queue overflowed), that is the intended outcome: log it as info."""

    MESSAGE = "ASGI callable returned without completing response."

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == self.MESSAGE:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "a response was cut short (a stream to a client that stopped reading was dropped)"
        return True


def install_redaction() -> None:
    """Add the filters to the servers' own loggers, which log request lines with their URLs."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokensFilter) for f in logger.filters):
            logger.addFilter(RedactTokensFilter())
    error_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, AbandonedStreamFilter) for f in error_logger.filters):
        error_logger.addFilter(AbandonedStreamFilter())
