"""The ``dsnotebook`` command: push files, list and pull datasets, watch a hub's status, run a demo.

Every command takes ``--url`` (default: ``DSNOTEBOOK_URL``, else ``~/.dsnotebook/datasets.db``).
The commands live by kind: :mod:`.push`, :mod:`.datasets`, :mod:`.status` and :mod:`.demo`; :mod:`.progress`
draws the upload bars, :mod:`.formatting` the sizes and tables, and :mod:`.app` the parser and
:func:`main`, the entry point of the ``dsnotebook`` script.
"""

from .app import build_parser, main

__all__ = ["build_parser", "main"]
