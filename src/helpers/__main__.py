"""``python -m helpers …``: the suite's command line (see :mod:`helpers.cli`)."""

from helpers.cli import main

raise SystemExit(main())
