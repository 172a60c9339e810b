"""Who a client is (principals), how that is proven (SASL, TLS certificates), and what it
may do (ACLs): shared by the Kafka listener and the gRPC service."""
