"""The loss registry: name -> Keras loss class, the protocol it trains under, what it consumes."""

from __future__ import annotations
