# The broker, and optionally a benchmark client beside it in the same subnet.

locals {
  # Every value the broker's user data template reads, and nothing more
  # (tests/terraform checks both directions).
  broker_user_data_vars = {
    tierlog_package   = var.tierlog_package
    object_store_url  = local.object_store_url
    aws_region        = local.region
    kafka_port        = var.kafka_port
    grpc_port         = var.grpc_port
    metrics_port      = var.metrics_port
    imds_address_path = var.advertise_address == "public" ? "public-ipv4" : "local-ipv4"
    broker_properties = local.broker_properties
    kafka_listener    = var.kafka_security_protocol
    service_host      = local.service_host
    insecure_flag     = local.secure ? "" : "--allow-insecure"
    # Empty under PLAINTEXT: the user data then fetches nothing.
    tls_secret_arn        = local.secure ? try(coalesce(var.tls_secret_arn), "") : ""
    tls_pem_path          = local.tls_pem_path
    first_user_name       = local.secure ? try(var.first_user.name, "") : ""
    first_user_secret_arn = local.secure ? try(var.first_user.password_secret_arn, "") : ""
  }
}

resource "aws_instance" "broker" {
  ami                         = local.broker_ami
  instance_type               = var.instance_type
  subnet_id                   = local.subnet_id
  vpc_security_group_ids      = [aws_security_group.broker.id]
  iam_instance_profile        = aws_iam_instance_profile.broker.name
  key_name                    = var.key_name
  associate_public_ip_address = var.associate_public_ip_address

  user_data = templatefile("${path.module}/templates/broker_user_data.sh.tftpl", local.broker_user_data_vars)
  # A changed setting means a fresh broker; the sealed segments wait in S3.
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required" # IMDSv2 only
    # 1 hop: containers on the host cannot borrow the broker's S3 role.
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size_gb
    encrypted             = true
    delete_on_termination = true
  }

  # Tagged so the volumes show up with the run in Cost Explorer.
  volume_tags = merge(local.tags, { Name = "${var.name}-broker" })

  tags = merge(local.tags, { Name = "${var.name}-broker" })

  # The role's policies must exist before tierlog first touches S3 or its secrets.
  depends_on = [aws_iam_role_policy.broker_object_store, aws_iam_role_policy.broker_secrets]

  lifecycle {
    # A newer Amazon Linux release must not replace a running broker by
    # surprise; taint or change user data to move to it.
    ignore_changes = [ami]

    precondition {
      condition     = !local.secure || (var.tls_secret_arn != null && var.first_user != null)
      error_message = "kafka_security_protocol = \"SASL_SSL\" (the default) needs tls_secret_arn (the broker's key and certificate chain, PEM) and first_user (a name and the ARN of its password's secret): see README.md, Security. For a benchmark on a private network, kafka_security_protocol = \"PLAINTEXT\"."
    }

    precondition {
      condition     = local.subnet_id != null
      error_message = "No default subnet of the default VPC is in a zone offering ${var.instance_type}${var.bench_enabled ? " and ${var.bench_instance_type}" : ""}: set subnet_id, or pick other instance types."
    }
  }
}

locals {
  bench_user_data_vars = {
    bench_package    = coalesce(var.bench_package, var.tierlog_package)
    broker_host      = aws_instance.broker.private_ip
    kafka_port       = var.kafka_port
    metrics_port     = var.metrics_port
    bench_extra_args = join(" ", var.bench_extra_args)
  }
}

resource "aws_instance" "bench" {
  count = var.bench_enabled ? 1 : 0

  ami                         = local.bench_ami
  instance_type               = var.bench_instance_type
  subnet_id                   = local.subnet_id
  vpc_security_group_ids      = [aws_security_group.bench[0].id]
  key_name                    = var.key_name
  associate_public_ip_address = var.associate_public_ip_address
  # No instance profile: the client only speaks Kafka to the broker.

  user_data                   = templatefile("${path.module}/templates/bench_user_data.sh.tftpl", local.bench_user_data_vars)
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size_gb
    encrypted             = true
    delete_on_termination = true
  }

  # Tagged so the volumes show up with the run in Cost Explorer.
  volume_tags = merge(local.tags, { Name = "${var.name}-bench" })

  tags = merge(local.tags, { Name = "${var.name}-bench" })

  # The bench needs an ingress rule to reach the broker before it starts.
  depends_on = [aws_vpc_security_group_ingress_rule.broker_from_bench]

  lifecycle {
    ignore_changes = [ami]

    precondition {
      # Clients follow the advertised address; a public one would send the
      # bench's traffic out and back in through the internet gateway, where
      # the security group no longer sees the bench's group.
      condition     = var.advertise_address == "private"
      error_message = "bench_enabled needs advertise_address = \"private\"."
    }

    precondition {
      # `tierlog bench` speaks plain Kafka.
      condition     = !local.secure
      error_message = "bench_enabled needs kafka_security_protocol = \"PLAINTEXT\"."
    }
  }
}
