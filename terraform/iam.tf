# The broker's identity: exactly the S3 calls tierlog's object store makes
# (put, multipart put, ranged get/head, list, delete) on its own prefix of its
# own bucket, and KMS only when the bucket uses a customer key; under SASL_SSL,
# reading its two secrets (the TLS key and certificate, the first user's
# password). Nothing else: no managed policies, no wildcards in resources.

data "aws_iam_policy_document" "broker_assume_role" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "broker" {
  name_prefix        = "${var.name}-broker-"
  description        = "tierlog broker: its own prefix of the cold-tier bucket"
  assume_role_policy = data.aws_iam_policy_document.broker_assume_role.json
  tags               = local.tags
}

data "aws_iam_policy_document" "broker_object_store" {
  # Listing is limited to keys under the prefix (segments, metadata, restore).
  statement {
    sid       = "ListTierlogPrefix"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.cold.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.object_prefix}/*"]
    }
  }

  # Finding the multipart uploads a crashed broker left behind, to abort them.
  # This action takes no prefix condition, so it is granted on the bucket.
  statement {
    sid       = "ListMultipartUploads"
    actions   = ["s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.cold.arn]
  }

  statement {
    sid = "ReadWriteTierlogObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.cold.arn}/${var.object_prefix}/*"]
  }

  # SSE-KMS: PutObject and multipart uploads need a data key; reads and
  # completing a multipart upload need Decrypt. Only through S3, only this key.
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]

    content {
      sid       = "UseBucketKmsKey"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${local.region}.amazonaws.com"]
      }
    }
  }
}

data "aws_iam_policy_document" "broker_secrets" {
  # One statement per secret, each naming its ARN exactly.
  dynamic "statement" {
    for_each = local.broker_secret_arns

    content {
      sid       = "ReadBrokerSecret${statement.key}"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [statement.value]
    }
  }

  # Secrets under a customer key: decrypt through Secrets Manager only.
  dynamic "statement" {
    for_each = local.secure && var.secrets_kms_key_arn != null ? [var.secrets_kms_key_arn] : []

    content {
      sid       = "DecryptBrokerSecrets"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "broker_secrets" {
  count = local.secure ? 1 : 0

  name   = "tierlog-secrets"
  role   = aws_iam_role.broker.id
  policy = data.aws_iam_policy_document.broker_secrets.json
}

resource "aws_iam_role_policy" "broker_object_store" {
  name   = "tierlog-object-store"
  role   = aws_iam_role.broker.id
  policy = data.aws_iam_policy_document.broker_object_store.json
}

resource "aws_iam_instance_profile" "broker" {
  name_prefix = "${var.name}-broker-"
  role        = aws_iam_role.broker.name
  tags        = local.tags
}
