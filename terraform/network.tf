# Who may talk to the broker: the CIDRs the user lists (none by default), the
# benchmark client when there is one, and SSH only from ssh_cidrs. Under
# SASL_SSL only the Kafka port is opened (gRPC and metrics stay on loopback);
# nothing here is open to the world either way.

locals {
  vpc_id = one(data.aws_subnet.selected[*].vpc_id)

  # One rule per (CIDR, port): the key names both so a change replaces one rule.
  broker_ingress_from_cidrs = {
    for pair in setproduct(var.allowed_cidrs, keys(local.exposed_ports)) :
    "${pair[1]}-${pair[0]}" => { cidr = pair[0], port = local.exposed_ports[pair[1]], listener = pair[1] }
  }
}

resource "aws_security_group" "broker" {
  name_prefix = "${var.name}-broker-"
  description = "tierlog broker: Kafka, gRPC and metrics from allowed CIDRs only"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-broker" })

  lifecycle {
    create_before_destroy = true

    precondition {
      condition     = length(distinct(values(local.broker_ports))) == length(local.broker_ports)
      error_message = "kafka_port, grpc_port and metrics_port must be three different ports."
    }
  }
}

resource "aws_vpc_security_group_ingress_rule" "broker_from_cidrs" {
  for_each = local.broker_ingress_from_cidrs

  security_group_id = aws_security_group.broker.id
  description       = "tierlog ${each.value.listener} from ${each.value.cidr}"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr
  tags              = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "broker_from_bench" {
  for_each = var.bench_enabled ? local.exposed_ports : {}

  security_group_id            = aws_security_group.broker.id
  description                  = "tierlog ${each.key} from the benchmark client"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.bench[0].id
  tags                         = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "broker_ssh" {
  for_each = toset(var.ssh_cidrs)

  security_group_id = aws_security_group.broker.id
  description       = "SSH from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = each.value
  tags              = local.tags
}

# Outbound stays open: the instances reach S3, the package mirrors and PyPI.
resource "aws_vpc_security_group_egress_rule" "broker_all" {
  security_group_id = aws_security_group.broker.id
  description       = "S3, package mirrors, PyPI"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
  tags              = local.tags
}

resource "aws_security_group" "bench" {
  count = var.bench_enabled ? 1 : 0

  name_prefix = "${var.name}-bench-"
  description = "tierlog benchmark client: no inbound except SSH from ssh_cidrs"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-bench" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "bench_ssh" {
  for_each = var.bench_enabled ? toset(var.ssh_cidrs) : toset([])

  security_group_id = aws_security_group.bench[0].id
  description       = "SSH from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = each.value
  tags              = local.tags
}

resource "aws_vpc_security_group_egress_rule" "bench_all" {
  count = var.bench_enabled ? 1 : 0

  security_group_id = aws_security_group.bench[0].id
  description       = "the broker, package mirrors, PyPI"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
  tags              = local.tags
}
