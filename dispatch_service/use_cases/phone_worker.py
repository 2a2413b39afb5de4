"""The import's phone worker process: its initializer (see guests.RowPreparer).

The worker is spawned, so it imports only what unpickling its calls needs: this module and
domain/phones.py (`normalise_phones`, what it runs), which import libphonenumber and nothing of
the service's. The initializer lived in use_cases/guests.py before, and every large import then
spawned a process that loaded SQLAlchemy, the models and the persistence layer (0.9 s of CPU,
beside the import's own work) only to parse phones.
"""

from __future__ import annotations

import signal


def start() -> None:
    """The worker's initializer. Ctrl-C in a terminal reaches the whole process group: the
    service shuts the import down (the worker then exits with its executor); the worker itself
    must not die mid-batch noisily."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
