"""Keep API tokens out of logs: `token=<value>` in any message or argument becomes `token=***`."""

from __future__ import annotations

import logging
import re

TOKEN_IN_TEXT = re.compile(r"((?:^|[?&;\s])(?:token|access_token)=)[^&\s\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    return TOKEN_IN_TEXT.sub(r"\1***", text)


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
