"""nfq-mip6's tests: ``unit/`` (no root), ``integration/`` (network namespaces), ``support/``."""
