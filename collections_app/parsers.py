"""A JSON parser that turns every body no later step could handle into a 400.

Malformed JSON, nesting deeper than the document limit, and text that is not valid Unicode (a
lone surrogate such as `"\\ud800"`, which Python's `json` accepts) or holds NUL characters are
refused before any view sees the data. Invalid text is reported under the top-level key that
holds it (for records: the field), in DRF's usual `{"field": ["message"]}` shape.
"""

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError

from collections_app.inputs import MAX_DOCUMENT_DEPTH, JsonProblem, json_problem, printable


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
        problem = json_problem(data, max_depth=MAX_DOCUMENT_DEPTH)
        if problem is None:
            return data
        if isinstance(data, dict) and problem.path:
            inner = JsonProblem(problem.path[1:], problem.message)
            raise ValidationError({printable(problem.path[0]): [str(inner)]})
        raise ParseError(f"JSON parse error - {problem}")
