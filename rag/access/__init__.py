"""Who may do what on a shared server: scoped tokens (stored hashed under the data folder) and the audit log.

No HTTP here: ``rag tokens`` and ``rag serve`` share these; the server's middleware (``rag.server.auth``)
turns a request's bearer token into a ``Principal`` with them.
"""

from .audit import AuditLog
from .tokens import (
    Principal,
    Scope,
    TokenError,
    TokenRecord,
    TokenStore,
    check_tenant,
)

__all__ = ["AuditLog", "Principal", "Scope", "TokenError", "TokenRecord", "TokenStore", "check_tenant"]
