"""Failed sign-ins are rate-limited per username and per client address (DRF's throttle store).

Only failures count: a user who signs in correctly is never slowed down, while guessing a
password, for one account from many addresses or for many accounts from one address, is capped at
the rate `login_failures` of `REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]` (10 a minute by default).
The counts live in Django's cache, shared by every worker when it is Redis.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class LoginFailureThrottle(SimpleRateThrottle):
    """The failed sign-ins of one identity (a username or an address) within the rate's window."""

    scope = "login_failures"

    def __init__(self, identity: str) -> None:
        super().__init__()
        # Hashed: usernames are client input of any length and alphabet.
        self.identity = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.identity}

    def allow_request(self, request: Any, view: Any) -> bool:
        """Whether another attempt may be made; unlike DRF's throttles, asking records nothing."""
        self.key = self.get_cache_key(request, view)
        self.now = self.timer()
        try:
            self.history = self.cache.get(self.key, [])
        except Exception:  # the shared cache (Redis) does not answer: sign-in stays available
            logger.warning("sign-in throttle unavailable (cache error); allowing the attempt", exc_info=True)
            self.history = []
            return True
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        return len(self.history) < self.num_requests

    def record_failure(self) -> None:
        """Count a failed attempt (after `allow_request`)."""
        self.history.insert(0, self.now)
        try:
            self.cache.set(self.key, self.history, self.duration)
        except Exception:
            logger.warning("sign-in throttle could not record a failure (cache error)", exc_info=True)


def login_throttles(request: Any, username: str) -> list[LoginFailureThrottle]:
    """The throttles a sign-in attempt counts against: its username and its client address."""
    address = LoginFailureThrottle("").get_ident(request) or "unknown"
    return [LoginFailureThrottle(f"user:{username.casefold()}"), LoginFailureThrottle(f"ip:{address}")]
