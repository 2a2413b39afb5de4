"""Scenario files shipped with the sandbox (``--scenario demo`` or ``--scenario chaos``)."""
