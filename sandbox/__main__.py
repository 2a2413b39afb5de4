"""``python -m sandbox``: run the Meta Cloud API sandbox."""

from sandbox.main import main

raise SystemExit(main())
