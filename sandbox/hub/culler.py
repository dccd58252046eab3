"""``python -m sandbox.hub.culler``: jupyterhub-idle-culler without its pycurl advice.

The culler logs "Could not load pycurl" as a warning at every start; pycurl matters only
for a large number of users (see :mod:`sandbox.hub.quiet`). Options are the culler's own.
"""

from __future__ import annotations

import logging

from jupyterhub_idle_culler import main

from sandbox.hub.quiet import NO_PYCURL, DropMessages

if __name__ == "__main__":
    logging.getLogger("IdleCuller").addFilter(DropMessages(NO_PYCURL))
    main()
