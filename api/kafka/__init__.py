"""The Kafka wire protocol: kcat, confluent-kafka, kafka-python and aiokafka work unchanged."""

from .server import KafkaListener

__all__ = ["KafkaListener"]
