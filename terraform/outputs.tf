locals {
  # Kafka clients must dial the address the broker advertises, or the
  # metadata it returns sends them elsewhere.
  broker_address = var.advertise_address == "public" ? aws_instance.broker.public_ip : aws_instance.broker.private_ip
  # gRPC and HTTP have no such redirection: the public IP, when there is one,
  # works from your own machine.
  reachable_address = coalesce(aws_instance.broker.public_ip, aws_instance.broker.private_ip)
}

output "bootstrap_servers" {
  description = "Kafka bootstrap address (host:port) for producers and consumers, e.g. kcat -b <this>."
  value       = "${local.broker_address}:${var.kafka_port}"
}

output "security_protocol" {
  description = "How Kafka clients connect: SASL_SSL (SCRAM-SHA-512 over TLS) or PLAINTEXT."
  value       = var.kafka_security_protocol
}

output "grpc_endpoint" {
  description = "host:port of the broker's gRPC service (public IP when it has one). Null under SASL_SSL: gRPC listens on the instance's loopback."
  value       = local.secure ? null : "${local.reachable_address}:${var.grpc_port}"
}

output "metrics_url" {
  description = "Prometheus scrape URL of the broker (public IP when it has one). Null under SASL_SSL: metrics listen on the instance's loopback (reach them with SSM port forwarding)."
  value       = local.secure ? null : "http://${local.reachable_address}:${var.metrics_port}/metrics"
}

output "health_url" {
  description = "The broker's health check; answers once `tierlog serve` is up. Null under SASL_SSL (loopback only)."
  value       = local.secure ? null : "http://${local.reachable_address}:${var.metrics_port}/healthz"
}

output "bucket_name" {
  description = "Name of the cold-tier S3 bucket."
  value       = aws_s3_bucket.cold.id
}

output "bucket_arn" {
  description = "ARN of the cold-tier S3 bucket."
  value       = aws_s3_bucket.cold.arn
}

output "object_store_url" {
  description = "The --object-store URL the broker runs with (s3://bucket/prefix)."
  value       = local.object_store_url
}

output "region" {
  description = "AWS region of the bucket and instances."
  value       = local.region
}

output "broker_instance_id" {
  description = "EC2 instance id of the broker."
  value       = aws_instance.broker.id
}

output "broker_instance_type" {
  description = "EC2 instance type of the broker, for cost estimates."
  value       = aws_instance.broker.instance_type
}

output "broker_private_ip" {
  description = "Private IPv4 address of the broker."
  value       = aws_instance.broker.private_ip
}

output "broker_public_ip" {
  description = "Public IPv4 address of the broker, empty when it has none."
  value       = aws_instance.broker.public_ip
}

output "broker_role_arn" {
  description = "ARN of the broker's IAM role."
  value       = aws_iam_role.broker.arn
}

output "security_group_id" {
  description = "Security group of the broker; add rules to it to admit more clients."
  value       = aws_security_group.broker.id
}

output "bench_instance_id" {
  description = "EC2 instance id of the benchmark client, null when bench_enabled is false."
  value       = one(aws_instance.bench[*].id)
}

output "bench_result_command" {
  description = "Command that prints the benchmark's JSON result once it has run; null when bench_enabled is false."
  value = var.bench_enabled ? join(" ", [
    "aws ec2 get-console-output --latest --output text",
    "--region ${local.region} --instance-id ${one(aws_instance.bench[*].id)}",
    "| sed -n '/TIERLOG-BENCH-JSON-BEGIN/,/TIERLOG-BENCH-JSON-END/p' | sed '1d;$d'",
  ]) : null
}
