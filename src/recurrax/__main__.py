"""``python -m recurrax`` runs the ``recurrax`` command (see :mod:`recurrax.cli`)."""

from recurrax.cli import main

raise SystemExit(main())
