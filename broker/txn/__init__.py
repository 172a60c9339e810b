"""Exactly-once: producer ids, the transaction coordinator and its state log."""
