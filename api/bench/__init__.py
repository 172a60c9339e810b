"""`tierlog bench`: OpenMessaging-Benchmark-style workloads over the Kafka protocol, with
the object store's requests and bytes read from the server's /metrics."""
