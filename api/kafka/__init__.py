"""The Kafka wire protocol: kcat, confluent-kafka, kafka-python and aiokafka work unchanged."""

from .server import KafkaListener, start_kafka_listener

__all__ = ["KafkaListener", "start_kafka_listener"]
