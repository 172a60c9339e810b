# Shared lookups and values: where the instances go, which AMI they boot,
# and what their user data is rendered from.

locals {
  tags = merge({ Application = "tierlog", TierlogDeployment = var.name }, var.tags)

  # The region the S3 client must talk to is the bucket's own.
  region = aws_s3_bucket.cold.region

  object_store_url = "s3://${aws_s3_bucket.cold.id}/${var.object_prefix}"

  broker_ports = {
    kafka   = var.kafka_port
    grpc    = var.grpc_port
    metrics = var.metrics_port
  }

  # SASL_SSL exposes Kafka only (TLS, SCRAM-SHA-512); gRPC and metrics then
  # listen on the instance's loopback, where `tierlog serve` needs no flag.
  secure        = var.kafka_security_protocol == "SASL_SSL"
  exposed_ports = local.secure ? { kafka = var.kafka_port } : local.broker_ports
  service_host  = local.secure ? "127.0.0.1" : "0.0.0.0"
  # The secrets the broker reads at boot, and may read (iam.tf): nothing else.
  broker_secret_arns = local.secure ? compact([var.tls_secret_arn, try(var.first_user.password_secret_arn, null)]) : []
  tls_pem_path       = "/etc/tierlog/tls/server.pem"
  security_conf = local.secure ? {
    "listeners"               = "SASL_SSL://0.0.0.0:${var.kafka_port}"
    "sasl.enabled.mechanisms" = "SCRAM-SHA-512"
    "ssl.keystore.type"       = "PEM"
    "ssl.keystore.location"   = local.tls_pem_path
  } : { "listeners" = "PLAINTEXT://0.0.0.0:${var.kafka_port}" }

  # The disks are instance storage, blank after a stop: every topic (and the
  # internal ones) acknowledges acks=all only once its batches are in the
  # bucket's write-ahead log, unless broker_conf says otherwise.
  broker_conf = merge({ "log.remote.wal.enable" = "true" }, var.broker_conf, local.security_conf)

  # One properties line per setting, sorted so the user data (and so the
  # instance) only changes when a setting does.
  broker_properties = join("\n", [for key in sort(keys(local.broker_conf)) : "${key}=${local.broker_conf[key]}"])
}

# ---------------------------------------------------------------------------
# Placement: a subnet in a zone that offers every instance type we launch
# ---------------------------------------------------------------------------

data "aws_ec2_instance_type_offerings" "wanted" {
  location_type = "availability-zone"

  filter {
    name   = "instance-type"
    values = var.bench_enabled ? [var.instance_type, var.bench_instance_type] : [var.instance_type]
  }
}

locals {
  offerings = data.aws_ec2_instance_type_offerings.wanted
  broker_zones = toset([
    for i, type in local.offerings.instance_types : local.offerings.locations[i] if type == var.instance_type
  ])
  bench_zones = toset([
    for i, type in local.offerings.instance_types : local.offerings.locations[i] if type == var.bench_instance_type
  ])
  usable_zones = var.bench_enabled ? setintersection(local.broker_zones, local.bench_zones) : local.broker_zones
}

data "aws_vpc" "default" {
  count   = var.subnet_id == null ? 1 : 0
  default = true
}

data "aws_subnets" "default" {
  count = var.subnet_id == null ? 1 : 0

  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default[0].id]
  }

  filter {
    name   = "default-for-az"
    values = ["true"]
  }

  filter {
    name   = "availability-zone"
    values = length(local.usable_zones) > 0 ? sort(local.usable_zones) : ["none"]
  }
}

locals {
  # Sorted so the choice is stable between plans. Null when nothing fits; the
  # broker's precondition then says why.
  subnet_id = var.subnet_id != null ? var.subnet_id : try(sort(data.aws_subnets.default[0].ids)[0], null)
}

data "aws_subnet" "selected" {
  count = local.subnet_id == null ? 0 : 1
  id    = local.subnet_id
}

# ---------------------------------------------------------------------------
# AMI: latest Amazon Linux 2023 for each instance type's architecture
# ---------------------------------------------------------------------------

data "aws_ec2_instance_type" "broker" {
  instance_type = var.instance_type
}

data "aws_ec2_instance_type" "bench" {
  count         = var.bench_enabled ? 1 : 0
  instance_type = var.bench_instance_type
}

locals {
  broker_arch = contains(data.aws_ec2_instance_type.broker.supported_architectures, "x86_64") ? "x86_64" : "arm64"
  bench_arch  = var.bench_enabled ? (contains(data.aws_ec2_instance_type.bench[0].supported_architectures, "x86_64") ? "x86_64" : "arm64") : local.broker_arch
}

data "aws_ssm_parameter" "al2023_ami" {
  for_each = var.ami_id == null ? toset([local.broker_arch, local.bench_arch]) : toset([])
  name     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${each.key}"
}

locals {
  broker_ami = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.al2023_ami[local.broker_arch].insecure_value
  bench_ami  = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.al2023_ami[local.bench_arch].insecure_value
}

# Not fatal, so a check rather than a precondition: the broker still runs,
# with its hot tier on the root EBS volume.
check "broker_has_local_nvme" {
  assert {
    condition     = data.aws_ec2_instance_type.broker.instance_storage_supported
    error_message = "${var.instance_type} has no instance storage: the hot tier will live on the ${var.root_volume_size_gb} GiB root EBS volume. Pick an i4i, i7ie, im4gn or *d type to benchmark local NVMe."
  }
}
