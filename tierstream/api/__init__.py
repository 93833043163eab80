"""HTTP API of tierstream: live tier lookups for support routing (see :func:`create_app`)."""

from tierstream.api.app import create_app

__all__ = ["create_app"]
