"""``python -m wayang``: the ``wayang`` command."""

import sys

from wayang.cli.main import main

sys.exit(main())
