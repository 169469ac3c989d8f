"""``python -m dsnotebook``: the same as the ``dsnotebook`` command."""

import sys

from .cli import main

sys.exit(main())
