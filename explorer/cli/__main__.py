"""``python -m explorer.cli``: the ``explorer`` command."""

import sys

from explorer.cli.main import main

sys.exit(main())
