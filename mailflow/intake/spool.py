"""The mail doors' spool: the one function lives in mailflow/spool.py, below every door (the
web's photo page spools too, and may not import intake/)."""

from __future__ import annotations

from mailflow.spool import Arrival, spool

__all__ = ["Arrival", "spool"]
