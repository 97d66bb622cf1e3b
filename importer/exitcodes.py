"""The exit codes of every command the package installs, documented in docs/cli.md."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_UNAVAILABLE = 4
EXIT_NO_SCHEMA = 5
EXIT_RUN_ACTIVE = 6
EXIT_RUN_ABANDONED = 7
EXIT_INTERRUPTED = 130
