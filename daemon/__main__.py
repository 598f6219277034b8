"""``python -m daemon`` is the ``hotwire`` command."""

import sys

from .cli import main

sys.exit(main())
