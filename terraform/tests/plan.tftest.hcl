# Plan-time checks with a mocked AWS provider: no credentials, no network.
# Run with `terraform init -backend=false && terraform test` (the pytest suite
# in tests/terraform runs it when a terraform binary and the AWS provider are
# at hand, and parses the .tf files statically either way).

mock_provider "aws" {
  # Computed values (bucket name, IPs) come from the mock at plan time, so
  # assertions can read the rendered user data without an apply.
  override_during = plan

  mock_data "aws_ec2_instance_type" {
    defaults = {
      supported_architectures    = ["x86_64"]
      instance_storage_supported = true
    }
  }

  mock_data "aws_ec2_instance_type_offerings" {
    defaults = {
      instance_types = ["i4i.large", "c6i.xlarge", "i4i.large"]
      locations      = ["us-east-1a", "us-east-1a", "us-east-1b"]
    }
  }

  mock_data "aws_subnets" {
    defaults = {
      ids = ["subnet-0b", "subnet-0a"]
    }
  }

  mock_data "aws_ssm_parameter" {
    defaults = {
      insecure_value = "ami-0123456789abcdef0"
    }
  }

  # The mock cannot render policies; the statements themselves are checked.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{}"
    }
  }

  mock_resource "aws_instance" {
    defaults = {
      private_ip = "10.0.1.10"
      public_ip  = "198.51.100.10"
    }
  }

  mock_resource "aws_s3_bucket" {
    defaults = {
      id     = "tierlog-test-bucket"
      arn    = "arn:aws:s3:::tierlog-test-bucket"
      region = "us-east-1"
    }
  }
}

# SASL_SSL, the default, needs its two secrets; runs that test something else
# get these (plain test ARNs, nothing is read at plan time).
variables {
  tls_secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tierlog-tls-AbCdEf"
  first_user = {
    name                = "admin"
    password_secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tierlog-admin-GhIjKl"
  }
}

run "defaults_are_private_and_encrypted" {
  command = plan

  assert {
    condition     = strcontains(aws_instance.broker.user_data, "log.remote.wal.enable=true\n")
    error_message = "Instance-store disks: the bucket WAL is on for every topic by default."
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.broker_from_cidrs) == 0 && length(aws_vpc_security_group_ingress_rule.broker_ssh) == 0
    error_message = "With default variables nothing may reach the broker from outside the module."
  }

  assert {
    condition     = length(aws_instance.bench) == 0 && length(aws_security_group.bench) == 0
    error_message = "The benchmark client must be off by default."
  }

  assert {
    condition = alltrue([
      aws_s3_bucket_public_access_block.cold.block_public_acls,
      aws_s3_bucket_public_access_block.cold.block_public_policy,
      aws_s3_bucket_public_access_block.cold.ignore_public_acls,
      aws_s3_bucket_public_access_block.cold.restrict_public_buckets,
    ])
    error_message = "The bucket must block every kind of public access."
  }

  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.cold.rule).apply_server_side_encryption_by_default).sse_algorithm == "AES256"
    error_message = "Without a KMS key the bucket uses SSE-S3."
  }

  assert {
    condition     = length(aws_s3_bucket_lifecycle_configuration.cold.rule) == 1
    error_message = "By default only the abort-multipart rule exists."
  }

  assert {
    condition     = aws_instance.broker.subnet_id == "subnet-0a" && aws_instance.broker.instance_type == "i4i.large"
    error_message = "The broker goes to the first (sorted) default subnet, as an i4i.large."
  }

  assert {
    condition     = aws_instance.broker.ami == "ami-0123456789abcdef0"
    error_message = "Without ami_id the broker boots the Amazon Linux 2023 AMI from SSM."
  }

  assert {
    condition     = one(aws_instance.broker.metadata_options).http_tokens == "required"
    error_message = "The broker must require IMDSv2."
  }

  assert {
    condition     = strcontains(aws_instance.broker.user_data, "--object-store s3://tierlog-test-bucket/tierlog \\")
    error_message = "The broker must run with the bucket and prefix as its object store."
  }

  assert {
    condition     = strcontains(aws_instance.broker.user_data, "listeners=SASL_SSL://0.0.0.0:9092\n") && strcontains(aws_instance.broker.user_data, "--conf advertised.listeners=SASL_SSL://$${TIERLOG_ADVERTISED_HOST}:9092") && strcontains(aws_instance.broker.user_data, "meta-data/local-ipv4")
    error_message = "The broker's SASL_SSL listener is on all interfaces and advertises its private address."
  }

  assert {
    condition     = strcontains(aws_instance.broker.user_data, "sasl.enabled.mechanisms=SCRAM-SHA-512\n") && strcontains(aws_instance.broker.user_data, "ssl.keystore.location=/etc/tierlog/tls/server.pem\n") && strcontains(aws_instance.broker.user_data, "tls_secret_arn='arn:aws:secretsmanager:us-east-1:123456789012:secret:tierlog-tls-AbCdEf'") && strcontains(aws_instance.broker.user_data, "tierlog users add 'admin' \\\n      --mechanism SCRAM-SHA-512 --password-file")
    error_message = "SASL_SSL: SCRAM-SHA-512, the PEM keystore from the TLS secret, and the first user added at boot."
  }

  assert {
    condition     = strcontains(aws_instance.broker.user_data, "--grpc-listen 127.0.0.1:9093 \\") && strcontains(aws_instance.broker.user_data, "--http-listen 127.0.0.1:9644 \\") && !strcontains(aws_instance.broker.user_data, "--allow-insecure")
    error_message = "Under SASL_SSL gRPC and metrics stay on the loopback, and nothing is started insecure."
  }

  assert {
    condition     = length(aws_iam_role_policy.broker_secrets) == 1 && [for s in data.aws_iam_policy_document.broker_secrets.statement : one(s.resources)] == ["arn:aws:secretsmanager:us-east-1:123456789012:secret:tierlog-tls-AbCdEf", "arn:aws:secretsmanager:us-east-1:123456789012:secret:tierlog-admin-GhIjKl"]
    error_message = "The broker may read exactly its two secrets."
  }

  assert {
    condition     = strcontains(aws_instance.broker.user_data, "Environment=AWS_REGION=us-east-1")
    error_message = "The broker's S3 client must get the bucket's region."
  }

  assert {
    condition     = output.bootstrap_servers == "10.0.1.10:9092" && output.metrics_url == null && output.security_protocol == "SASL_SSL"
    error_message = "bootstrap_servers is the advertised (private) address; under SASL_SSL metrics are on the loopback only."
  }
}

run "bench_kms_transition_and_clients" {
  command = plan

  variables {
    bench_enabled                    = true
    kafka_security_protocol          = "PLAINTEXT"
    allowed_cidrs                    = ["203.0.113.7/32", "198.51.100.0/24"]
    kms_key_arn                      = "arn:aws:kms:us-east-1:123456789012:key/0000-1111"
    segment_transition_storage_class = "GLACIER_IR"
    segment_transition_days          = 7
    broker_conf                      = { "log.segment.bytes" = "1048576", "log.local.retention.bytes" = "1073741824" }
    bench_extra_args                 = ["--duration", "60"]
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.broker_from_cidrs) == 6 && length(aws_vpc_security_group_ingress_rule.broker_from_bench) == 3
    error_message = "Each allowed CIDR gets the three broker ports, and so does the bench's group."
  }

  assert {
    condition     = toset([for rule in aws_vpc_security_group_ingress_rule.broker_from_cidrs : rule.from_port]) == toset([9092, 9093, 9644])
    error_message = "Only the Kafka, gRPC and metrics ports are opened."
  }

  assert {
    condition     = aws_instance.broker.subnet_id == "subnet-0a"
    error_message = "With the bench, the subnet must be in a zone offering both types."
  }

  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.cold.rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms"
    error_message = "A KMS key switches the bucket to SSE-KMS."
  }

  assert {
    condition     = length([for s in data.aws_iam_policy_document.broker_object_store.statement : s if contains(s.actions, "kms:Decrypt")]) == 1
    error_message = "A KMS key adds one KMS statement to the broker's policy."
  }

  assert {
    condition     = length(aws_s3_bucket_lifecycle_configuration.cold.rule) == 2
    error_message = "A transition class adds the transition rule."
  }

  assert {
    condition     = strcontains(aws_instance.broker.user_data, "log.local.retention.bytes=1073741824\nlog.remote.wal.enable=true\nlog.segment.bytes=1048576\n")
    error_message = "broker_conf becomes sorted properties lines, with the bucket WAL on by default."
  }

  assert {
    condition     = strcontains(aws_instance.bench[0].user_data, "tierlog bench --bootstrap 10.0.1.10:9092 --json /var/log/tierlog-bench.json --duration 60")
    error_message = "The bench targets the broker's private address."
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.bench_ssh) == 0
    error_message = "Nothing reaches the benchmark client without ssh_cidrs."
  }

  assert {
    condition     = strcontains(aws_instance.broker.user_data, "listeners=PLAINTEXT://0.0.0.0:9092\n") && strcontains(aws_instance.broker.user_data, "--grpc-listen 0.0.0.0:9093 \\") && strcontains(aws_instance.broker.user_data, "--allow-insecure") && strcontains(aws_instance.broker.user_data, "tls_secret_arn=''")
    error_message = "PLAINTEXT opens every listener, says so with --allow-insecure, and reads no secret."
  }

  assert {
    condition     = length(aws_iam_role_policy.broker_secrets) == 0 && output.metrics_url == "http://198.51.100.10:9644/metrics"
    error_message = "PLAINTEXT: no secrets to read, and metrics reachable from allowed_cidrs."
  }
}

run "sasl_ssl_exposes_only_kafka" {
  command = plan

  variables {
    allowed_cidrs       = ["203.0.113.7/32"]
    secrets_kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/2222-3333"
  }

  assert {
    condition     = [for rule in aws_vpc_security_group_ingress_rule.broker_from_cidrs : rule.from_port] == [9092]
    error_message = "Under SASL_SSL only the Kafka port is opened."
  }

  assert {
    condition     = length([for s in data.aws_iam_policy_document.broker_secrets.statement : s if s.actions == toset(["kms:Decrypt"])]) == 1
    error_message = "A customer key for the secrets adds one decrypt statement."
  }
}

run "sasl_ssl_needs_its_secrets" {
  command = plan

  variables {
    tls_secret_arn = null
    first_user     = null
  }

  expect_failures = [aws_instance.broker]
}

run "bench_needs_plaintext" {
  command = plan

  variables {
    bench_enabled = true
  }

  expect_failures = [aws_instance.bench]
}

run "standard_ia_needs_30_days" {
  command = plan

  variables {
    segment_transition_storage_class = "STANDARD_IA"
    segment_transition_days          = 7
  }

  expect_failures = [aws_s3_bucket_lifecycle_configuration.cold]
}

run "bench_needs_private_advertising" {
  command = plan

  variables {
    bench_enabled           = true
    kafka_security_protocol = "PLAINTEXT"
    advertise_address       = "public"
  }

  expect_failures = [aws_instance.bench]
}

run "ports_must_differ" {
  command = plan

  variables {
    grpc_port = 9092
  }

  expect_failures = [aws_security_group.broker]
}

run "bad_inputs_are_refused" {
  command = plan

  variables {
    allowed_cidrs                    = ["my laptop"]
    object_prefix                    = "/tierlog/"
    segment_transition_storage_class = "GLACIER"
    broker_conf                      = { "advertised.listeners" = "PLAINTEXT://x:9092" }
    tierlog_package                  = "tierlog'; rm -rf /"
    tls_secret_arn                   = "tierlog-tls"
  }

  expect_failures = [
    var.tls_secret_arn,
    var.allowed_cidrs,
    var.object_prefix,
    var.segment_transition_storage_class,
    var.broker_conf,
    var.tierlog_package,
  ]
}

run "custom_ami_and_subnet" {
  command = plan

  variables {
    ami_id      = "ami-0fedcba9876543210"
    subnet_id   = "subnet-0c"
    bucket_name = "my-tierlog-cold"
  }

  assert {
    condition     = aws_instance.broker.ami == "ami-0fedcba9876543210" && length(data.aws_ssm_parameter.al2023_ami) == 0
    error_message = "ami_id replaces the SSM lookup."
  }

  assert {
    condition     = aws_instance.broker.subnet_id == "subnet-0c" && length(data.aws_subnets.default) == 0
    error_message = "subnet_id replaces the default-VPC lookup."
  }

  assert {
    condition     = aws_s3_bucket.cold.bucket == "my-tierlog-cold"
    error_message = "bucket_name names the bucket exactly."
  }
}
