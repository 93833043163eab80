"""``python -m tierstream`` is the ``tierstream`` command."""

import sys

from tierstream.cli import main

sys.exit(main())
