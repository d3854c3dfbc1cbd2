"""Crash-safe persistence of protocol state (SQLite WAL under ``config.state_dir``).

* :mod:`nfq_mip6.store.database`: the database — schema, migrations, transactions and the
  typed rows (:class:`StateStore`, :class:`StoredBinding`, ...);
* :mod:`nfq_mip6.store.binding_store`: the HA's :class:`BindingStore` interface (binding +
  RFC 4285 timestamps committed as one operation) and its SQLite implementation; the etcd one
  is :mod:`nfq_mip6.store.etcd` (optional extra ``nfq-mip6[cluster]``, imported on demand);
* one mapper per role between its core and the rows: :mod:`nfq_mip6.store.home_agent`
  (:class:`HomeBindingPersistence`), :mod:`nfq_mip6.store.mobile_node`
  (:class:`MobileNodePersistence`), :mod:`nfq_mip6.store.correspondent`
  (:class:`CorrespondentPersistence`).
"""

from nfq_mip6.store.binding_store import (
    BindingCommit,
    BindingSnapshot,
    BindingStore,
    CommitConflict,
    CommitTimeout,
    SqliteBindingStore,
)
from nfq_mip6.store.correspondent import CorrespondentPersistence
from nfq_mip6.store.database import (
    DATABASE_NAME,
    SCHEMA_VERSION,
    StateStore,
    StoredBinding,
    StoredBulEntry,
    StoredNodeKey,
    StoredNonce,
    StoreError,
    WalCheckpointer,
)
from nfq_mip6.store.home_agent import HomeBindingPersistence
from nfq_mip6.store.mobile_node import MobileNodePersistence

__all__ = [
    "DATABASE_NAME",
    "SCHEMA_VERSION",
    "BindingCommit",
    "BindingSnapshot",
    "BindingStore",
    "CommitConflict",
    "CommitTimeout",
    "CorrespondentPersistence",
    "HomeBindingPersistence",
    "MobileNodePersistence",
    "SqliteBindingStore",
    "StateStore",
    "StoreError",
    "StoredBinding",
    "StoredBulEntry",
    "StoredNodeKey",
    "StoredNonce",
    "WalCheckpointer",
]
