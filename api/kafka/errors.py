"""The protocol's own error. Error codes for the broker's typed errors come from the one
taxonomy in broker/errors.py (`kafka_code`)."""

from __future__ import annotations


class RequestDecodeError(Exception):
    """A request frame that is truncated or malformed."""
