"""Calling rafka actors from clients: kept for compatibility, the code lives in
``rafka.calls`` (error translation, ``get``, ``call_with_retries``), which actors use too.
``ActorUnavailableError`` is ``rafka.errors.ActorUnavailableError``."""

from __future__ import annotations

from rafka.calls import call_with_retries, get, retriable_error, unwrap
from rafka.errors import ActorUnavailableError

__all__ = ["ActorUnavailableError", "call_with_retries", "get", "retriable_error", "unwrap"]
