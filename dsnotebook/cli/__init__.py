"""The ``dsnotebook`` command: push files, list and pull datasets, watch a hub's status, run a demo.

Every command takes ``--url``, before or after its name (default: ``DSNOTEBOOK_URL``, else
``~/.dsnotebook/datasets.db``); only ``push`` and ``demo`` create a database. An error is one
``dsnotebook: error: ...`` line and exit status 2.

The commands live by kind: :mod:`.push`, :mod:`.datasets`, :mod:`.status` and :mod:`.demo`. :mod:`.files`
reads the files ``push`` takes, with :mod:`.text` for compression, separators and encodings and
:mod:`.casting` for lossless casts; :mod:`.progress` draws the
upload bars, :mod:`.formatting` the tables and JSON, :mod:`.arguments` the argument types
they share, and :mod:`.app` the parser and :func:`main`, the entry point of the ``dsnotebook`` script.
"""

from .app import build_parser, main

__all__ = ["build_parser", "main"]
