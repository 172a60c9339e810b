"""The write-ahead log in the bucket: what makes an acknowledged batch survive losing the
machine. Batches appended to partitions of `remote.wal.enable` topics are gathered over
a short window into one object for the whole broker, committed, and only then are their
acks=all producers answered; tiered segments take the data over within minutes and the
objects are deleted. A broker started on an empty disk restores tiered segments and then
the WAL objects past them."""
