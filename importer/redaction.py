"""Secrets masked out of any text before it is logged or printed.

One function for every place that shows text it did not write: log
records, error lines of the CLI, URLs of settings.
"""

from __future__ import annotations

import re

#: ``scheme://user:password@host``: the password goes, the user stays.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*(?P<tail>@)", re.I)

#: ``?token=...``, ``&client_secret=...`` and the like, wherever a query
#: string appears: any parameter whose name has one of these words in it.
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&][\w.-]*(?:token|key|secret|passw|pwd|auth|sig|credential)[\w.-]*=)[^&\s]*",
    re.I,
)


def redact(text: str) -> str:
    """``text`` with passwords in URLs and secret query parameters masked."""
    text = _URL_PASSWORD.sub(r"\g<head>***\g<tail>", text)
    return _QUERY_SECRET.sub(r"\g<head>***", text)
