"""Settings of the servers the tests start: the product's, able to check the tests' fast hashes."""

from fastcms.settings import *  # noqa: F403
from fastcms.settings import PASSWORD_HASHERS as DEFAULT_HASHERS

PASSWORD_HASHERS = [*DEFAULT_HASHERS, "django.contrib.auth.hashers.MD5PasswordHasher"]
