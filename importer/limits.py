"""Every time limit, delay and backoff of the importer, in one place.

They hang together: RabbitMQ requeues a delivery left unacked longer
than its ``consumer_timeout``, and Dramatiq holds delayed messages and
retry backoffs unacked in the worker until they are due.  So every
delay, backoff and time limit stays well below that timeout, and every
HTTP call ends well within its actor's time limit (``TimeLimit``
interrupts Python code, not a blocked socket read).  The assertions at
the bottom hold these relations whenever one number changes.
"""

from __future__ import annotations

#: RabbitMQ's ``consumer_timeout`` (its default), in seconds; the
#: deployment files set the same value.
RABBITMQ_CONSUMER_TIMEOUT = 30 * 60

#: The longest delay between two batches of a run, in seconds.
MAX_DELAY_SECONDS = 15 * 60

#: The most rows one batch may select: its item messages are sent in one step.
MAX_BATCH_SIZE = 10_000

#: Time limits of the actors, in seconds.
BATCH_TIME_LIMIT = 120
ITEM_TIME_LIMIT = 60

#: Shortest and longest backoff between two tries of a failed message.
MIN_BACKOFF = 2
BATCH_MAX_BACKOFF = 300
ITEM_MAX_BACKOFF = 60

#: The longest an API call waits for its slot of the budget; a call that
#: would wait longer has its message retried later instead.
BUDGET_MAX_WAIT = 20

#: The longest wait after a 429, whatever its ``Retry-After`` says.
MAX_RATE_LIMIT_WAIT = 300

#: The longest a successor may take to be published once its step has
#: committed; until then a redelivered step leaves the sending to the
#: delivery that is doing it.
SUCCESSOR_GRACE = 30

#: How long a draining run waits for its last items beyond the time the
#: API budget needs for them.
DRAIN_TIMEOUT = 15 * 60


def max_call_seconds(connect_timeout: float, read_timeout: float) -> float:
    """The longest one API call can take: its budget wait, a pool wait, connect, read."""
    return BUDGET_MAX_WAIT + 2 * connect_timeout + read_timeout


_LONGEST_HELD = max(MAX_DELAY_SECONDS, BATCH_MAX_BACKOFF, ITEM_MAX_BACKOFF,
                    MAX_RATE_LIMIT_WAIT, BATCH_TIME_LIMIT, ITEM_TIME_LIMIT)
assert _LONGEST_HELD * 1.5 < RABBITMQ_CONSUMER_TIMEOUT
assert max_call_seconds(5, 15) < ITEM_TIME_LIMIT < BATCH_TIME_LIMIT
assert SUCCESSOR_GRACE < BATCH_TIME_LIMIT
