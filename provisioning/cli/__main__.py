"""``python3 -m provisioning.cli``: the same as the ``buildfleet`` command."""

import sys

from provisioning.cli import main

sys.exit(main())
