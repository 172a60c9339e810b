# The cold tier. tierlog writes every object under var.object_prefix; the
# bucket itself is private, encrypted and reachable only over TLS.

resource "aws_s3_bucket" "cold" {
  bucket        = var.bucket_name
  bucket_prefix = var.bucket_name == null ? "${var.name}-" : null
  force_destroy = var.force_destroy
  tags          = merge(local.tags, { Name = "${var.name}-cold-tier" })
}

resource "aws_s3_bucket_public_access_block" "cold" {
  bucket = aws_s3_bucket.cold.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# ACLs off: every object belongs to the bucket owner whatever the writer.
resource "aws_s3_bucket_ownership_controls" "cold" {
  bucket = aws_s3_bucket.cold.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Versioning stays off on purpose: each upload gets a fresh segment id, so
# nothing is overwritten, and old versions of deleted segments would keep
# costing storage after remote retention removed them.

resource "aws_s3_bucket_server_side_encryption_configuration" "cold" {
  bucket = aws_s3_bucket.cold.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    # With KMS, a bucket key cuts KMS requests (and their cost) per object.
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "cold" {
  bucket = aws_s3_bucket.cold.id

  # A broker killed mid-upload leaves parts that are billed until aborted.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  dynamic "rule" {
    for_each = var.segment_transition_storage_class == null ? [] : [var.segment_transition_storage_class]

    content {
      id     = "transition-old-segments"
      status = "Enabled"

      filter {
        and {
          prefix = "${var.object_prefix}/"
          # IA classes bill every object as at least 128 KiB; small index and
          # metadata objects are cheaper left in Standard.
          object_size_greater_than = 131072
        }
      }

      transition {
        days          = var.segment_transition_days
        storage_class = rule.value
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.segment_transition_storage_class != "STANDARD_IA" || var.segment_transition_days >= 30
      error_message = "S3 moves objects to STANDARD_IA only after 30 days or more: raise segment_transition_days or use GLACIER_IR."
    }
  }
}

# Refuse plain HTTP to the bucket from anyone, the broker included.
data "aws_iam_policy_document" "cold_tls_only" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.cold.arn, "${aws_s3_bucket.cold.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "cold" {
  bucket = aws_s3_bucket.cold.id
  policy = data.aws_iam_policy_document.cold_tls_only.json

  # S3 can answer OperationAborted when two settings of one bucket change at
  # once; ordering the policy after the access block avoids that.
  depends_on = [aws_s3_bucket_public_access_block.cold]
}
