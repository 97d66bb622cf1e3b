"""Health check of an importer container (worker or scheduler).

Healthy means that this container's settings reach the database, which
has the importer's schema, and RabbitMQ, which accepts a connection.
Exits 0 when healthy; otherwise prints one line on stderr and exits 1.

``IMPORTER_BROKER_URL`` must be set.  A worker refuses to start without
it, but the scheduler does not: it would send its start messages to an
in-process broker where no worker sees them.

It does not prove that the worker consumes messages: the consumer counts
in the RabbitMQ management UI (or ``python -m importer status``) do.
"""

from __future__ import annotations

import sys


def main() -> int:
    from importer.broker import connect
    from importer.database import check_schema
    from importer.errors import ConfigurationError, ImporterError
    from importer.settings import get_settings

    try:
        settings = get_settings()
        check_schema()
        if not settings.broker_url:
            raise ConfigurationError("IMPORTER_BROKER_URL is not set: messages would stay "
                                     "in this process, where no worker sees them")
        connect(settings.broker_url).close()
    except ImporterError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
