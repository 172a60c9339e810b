# The smallest useful deployment: one i4i.large broker, its bucket, and a
# benchmark client. Run from this folder:
#   terraform init
#   terraform apply -var 'my_cidr=203.0.113.7/32'

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
  }
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "my_cidr" {
  description = "Your own address as a /32 (curl -s https://checkip.amazonaws.com), allowed to reach the broker's ports."
  type        = string

  validation {
    condition     = can(cidrnetmask(var.my_cidr)) && var.my_cidr != "0.0.0.0/0"
    error_message = "my_cidr must be an IPv4 CIDR such as 203.0.113.7/32, and not 0.0.0.0/0."
  }
}

provider "aws" {
  region = var.region

  # Tags on everything, so the run can be found in Cost Explorer.
  default_tags {
    tags = {
      Project = "tierlog-bench"
    }
  }
}

module "tierlog" {
  source = "../.."

  allowed_cidrs = [var.my_cidr]
  bench_enabled = true
  # `tierlog bench` speaks plain Kafka: a benchmark deployment, reachable
  # from my_cidr only. Leave it out (SASL_SSL) for anything that keeps data.
  kafka_security_protocol = "PLAINTEXT"
  # A benchmark bucket is disposable: let `terraform destroy` empty it.
  force_destroy = true

  broker_conf = {
    "log.segment.bytes" = "268435456"
  }
}

output "bootstrap_servers" {
  description = "Kafka bootstrap address of the broker."
  value       = module.tierlog.bootstrap_servers
}

output "metrics_url" {
  description = "Prometheus metrics of the broker."
  value       = module.tierlog.metrics_url
}

output "bucket_name" {
  description = "The cold-tier bucket."
  value       = module.tierlog.bucket_name
}

output "bench_result_command" {
  description = "Prints the benchmark's JSON result once it has run."
  value       = module.tierlog.bench_result_command
}
