"""Access rules: `null` = staff only, `""` = everyone, anything else = a query that must hold.

Staff bypass every rule. A rule compiles, per caller, to a `Condition` that filters querysets
(`q()`) and checks a record in memory (`matches()`); both agree (see `query`).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from django.core.exceptions import ValidationError

from collections_app.models import RULE_NAMES
from collections_app.query import FALSE, TRUE, Auth, Condition, Node, QueryError, compile_query, parse
from collections_app.schema import FieldSpec

logger = logging.getLogger(__name__)


def is_staff(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_staff)


@lru_cache(maxsize=2048)
def _parse_rule(text: str) -> Node | None:
    return parse(text)


def rule_condition(collection: Any, rule_name: str, user: Any) -> Condition | None:
    """The condition `rule_name` sets for `user`; None when the rule is null and `user` is not staff."""
    return rule_condition_for(collection, rule_name, auth=Auth.of(user), staff=is_staff(user))


def rule_condition_for(collection: Any, rule_name: str, *, auth: Auth, staff: bool) -> Condition | None:
    """`rule_condition` for a caller known by its `Auth` and staff flag.

    `collection` is anything with `name`, `field_map` and the rule attributes (a Collection, or a
    snapshot of one).
    """
    if staff:
        return TRUE
    text = getattr(collection, rule_name)
    if text is None:
        return None
    if text.strip(" ") == "":
        return TRUE
    try:
        return compile_query(_parse_rule(text), fields=collection.field_map, auth=auth, allow_hidden=True)
    except QueryError as exc:
        # Rules are validated when saved, so this only follows a schema edited outside the services.
        logger.error("collection %s: %s no longer compiles (%s); denying", collection.name, rule_name, exc.detail)
        return FALSE


def validate_rules(rules: dict[str, Any], fields: dict[str, FieldSpec]) -> None:
    """Raise ValidationError({rule: [message]}) for rules that are not valid queries on `fields`."""
    errors: dict[str, list[str]] = {}
    for name in RULE_NAMES:
        text = rules.get(name)
        if text is None or text.strip(" ") == "":
            continue
        try:
            # Bind as an authenticated caller so macros compare with the fields they name.
            compile_query(parse(text), fields=fields, auth=Auth(id="0", username="rule-check"), allow_hidden=True)
        except QueryError as exc:
            where = "" if exc.position is None else f" (at position {exc.position})"
            errors[name] = [f"Invalid rule: {exc.detail}{where}."]
    if errors:
        raise ValidationError(errors)
