"""The `invites` command's exit codes, in one module every command imports (never cli.main).

0 success; 1 a local stack command (up, migrate, console) failed; 2 usage or configuration
error; 3 the server refused or failed the call; 4 a watched run ended with failures (or is
paused); 130 interrupted.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SERVER = 3
EXIT_RUN_FAILURES = 4
EXIT_INTERRUPTED = 130
