"""Broker services that every protocol shares: the write path, consumer groups and their
committed offsets, producer ids and transactions, internal topics, the error taxonomy.

The Kafka listener and the gRPC service translate their requests into calls on these;
nothing here knows a wire format. Imports point down: api -> broker -> fetch."""
