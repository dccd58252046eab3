"""``python -m gateway.cli``: the ``dpsandbox`` command."""

from gateway.cli import main

raise SystemExit(main())
