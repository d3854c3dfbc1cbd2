"""``python -m nfq_mip6 …`` is the ``nfq-mip6`` command."""

from nfq_mip6.cli import main

raise SystemExit(main())
