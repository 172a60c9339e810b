"""Names of files and objects made from topic names, kept within what a file system holds.

A legal topic name has up to 249 characters (Kafka's limit), so `<topic>-<partition>`
fits one file name but little more does: a suffix such as a topic id or `-delete` can
take it past the 255 bytes most file systems (ext4, XFS, tmpfs) allow in one name. Such
names keep as much of the topic name as fits, then `~` and a digest of the whole name:
`~` is never in a topic name, so a shortened name cannot be mistaken for a topic's own,
and the digest keeps two long names that share a beginning apart. Names that fit are
left as they are, so what earlier versions wrote keeps its name.
"""

from __future__ import annotations

import hashlib

NAME_MAX = 255  # bytes in one file name
SHORTENED_MARK = "~"
_DIGEST_CHARS = 16  # hex digits of SHA-256: 64 bits


def fit_name(name: str, suffix: str = "", limit: int = NAME_MAX) -> str:
    """`name + suffix` if it fits in `limit` bytes (UTF-8), else `name` cut short, marked
    and followed by a digest of it, then `suffix`: at most `limit` bytes either way."""
    whole = name + suffix
    if len(whole.encode()) <= limit:
        return whole
    digest = hashlib.sha256(name.encode()).hexdigest()[:_DIGEST_CHARS]
    keep = limit - len(suffix.encode()) - len(SHORTENED_MARK) - len(digest)
    if keep < 1:
        raise ValueError(f"a suffix of {len(suffix.encode())} bytes leaves no room for a name in {limit}")
    head = name.encode()[:keep].decode(errors="ignore")  # never half a character
    return f"{head}{SHORTENED_MARK}{digest}{suffix}"
