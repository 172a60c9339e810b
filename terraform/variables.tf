# ---------------------------------------------------------------------------
# Naming and tags
# ---------------------------------------------------------------------------

variable "name" {
  description = "Prefix for the names of everything this module creates (bucket, role, security groups, instances)."
  type        = string
  default     = "tierlog"

  validation {
    # Short enough that "<name>-broker-" still leaves room in IAM and SG name prefixes.
    condition     = can(regex("^[a-z][a-z0-9-]{0,23}$", var.name))
    error_message = "name must start with a lowercase letter and hold at most 24 lowercase letters, digits or dashes."
  }
}

variable "tags" {
  description = "Tags added to every resource, e.g. { Project = \"tierlog-bench\" } to find the run in Cost Explorer."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------
# Cold tier: the S3 bucket
# ---------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the S3 bucket for the cold tier. Null lets AWS generate a unique name starting with \"<name>-\"."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name: 3-63 lowercase letters, digits, dots or dashes."
  }
}

variable "object_prefix" {
  description = "Key prefix under which tierlog stores segments in the bucket (no leading or trailing slash). The broker's IAM role is limited to it."
  type        = string
  default     = "tierlog"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$", var.object_prefix))
    error_message = "object_prefix must be one or more path parts of letters, digits, dots, dashes or underscores joined by single slashes, with no leading or trailing slash."
  }
}

variable "kms_key_arn" {
  description = "ARN of a KMS key for SSE-KMS. Null keeps SSE-S3 (AES256), which costs nothing per request."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>), not an alias."
  }
}

variable "segment_transition_storage_class" {
  description = "Storage class that sealed segments move to after segment_transition_days: \"STANDARD_IA\" or \"GLACIER_IR\". Null keeps everything in S3 Standard."
  type        = string
  default     = null

  validation {
    # Both classes still serve ranged GETs at once, so the read path keeps working; Glacier Flexible/Deep would not.
    condition     = var.segment_transition_storage_class == null || contains(["STANDARD_IA", "GLACIER_IR"], coalesce(var.segment_transition_storage_class, "-"))
    error_message = "segment_transition_storage_class must be null, \"STANDARD_IA\" or \"GLACIER_IR\"."
  }
}

variable "segment_transition_days" {
  description = "Age in days after which objects under the prefix move to segment_transition_storage_class. S3 requires at least 30 for STANDARD_IA."
  type        = number
  default     = 30

  validation {
    condition     = var.segment_transition_days >= 0 && floor(var.segment_transition_days) == var.segment_transition_days
    error_message = "segment_transition_days must be a whole number of days, 0 or more."
  }
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete the bucket even when it still holds segments. Handy for throwaway benchmarks; leave false where the data matters."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------

variable "subnet_id" {
  description = "Subnet for the instances. Null picks a default subnet of the default VPC in a zone that offers the instance type(s)."
  type        = string
  default     = null

  validation {
    condition     = var.subnet_id == null || can(regex("^subnet-[0-9a-f]+$", var.subnet_id))
    error_message = "subnet_id must look like subnet-0123abcd."
  }
}

variable "associate_public_ip_address" {
  description = "Give the instances a public IPv4 address. Null follows the subnet's setting. They need some route out (public IP or NAT) to install packages."
  type        = bool
  default     = null
}

variable "allowed_cidrs" {
  description = "IPv4 CIDRs allowed to reach the broker's Kafka, gRPC and metrics ports, e.g. [\"203.0.113.7/32\"]. Empty by default: nothing outside the module can connect until you list your own address."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.allowed_cidrs : can(cidrnetmask(cidr))])
    error_message = "allowed_cidrs must hold IPv4 CIDR blocks such as 203.0.113.7/32."
  }
}

variable "ssh_cidrs" {
  description = "IPv4 CIDRs allowed to reach port 22 on the instances. Empty by default (no SSH); needs key_name to be useful."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.ssh_cidrs : can(cidrnetmask(cidr))])
    error_message = "ssh_cidrs must hold IPv4 CIDR blocks such as 203.0.113.7/32."
  }
}

variable "key_name" {
  description = "Name of an existing EC2 key pair for SSH. Null launches without one."
  type        = string
  default     = null

  validation {
    condition     = var.key_name == null || length(trimspace(coalesce(var.key_name, " "))) > 0
    error_message = "key_name must be null or the name of a key pair, not an empty string."
  }
}

variable "kafka_port" {
  description = "Port of the broker's Kafka protocol listener."
  type        = number
  default     = 9092

  validation {
    condition     = var.kafka_port >= 1024 && var.kafka_port <= 65535 && floor(var.kafka_port) == var.kafka_port
    error_message = "kafka_port must be a whole number from 1024 to 65535 (the broker does not run as root)."
  }
}

variable "grpc_port" {
  description = "Port of the broker's gRPC listener."
  type        = number
  default     = 9093

  validation {
    condition     = var.grpc_port >= 1024 && var.grpc_port <= 65535 && floor(var.grpc_port) == var.grpc_port
    error_message = "grpc_port must be a whole number from 1024 to 65535 (the broker does not run as root)."
  }
}

variable "metrics_port" {
  description = "Port of the broker's HTTP listener (/metrics for Prometheus, /healthz)."
  type        = number
  default     = 9644

  validation {
    condition     = var.metrics_port >= 1024 && var.metrics_port <= 65535 && floor(var.metrics_port) == var.metrics_port
    error_message = "metrics_port must be a whole number from 1024 to 65535 (the broker does not run as root)."
  }
}

# ---------------------------------------------------------------------------
# Security (docs/security.md)
# ---------------------------------------------------------------------------

variable "kafka_security_protocol" {
  description = "SASL_SSL (the default): Kafka clients connect over TLS and authenticate with SCRAM-SHA-512, and gRPC and metrics listen on the instance's loopback only. PLAINTEXT: Kafka, gRPC and metrics open to allowed_cidrs without TLS or authentication (`tierlog serve --allow-insecure`), for a benchmark on a private network."
  type        = string
  default     = "SASL_SSL"

  validation {
    condition     = contains(["SASL_SSL", "PLAINTEXT"], var.kafka_security_protocol)
    error_message = "kafka_security_protocol must be \"SASL_SSL\" or \"PLAINTEXT\"."
  }
}

variable "tls_secret_arn" {
  description = "SASL_SSL: ARN of the Secrets Manager secret whose SecretString is the broker's private key followed by its certificate chain (PEM). The certificate must name the address clients connect to (see advertise_address)."
  type        = string
  default     = null

  validation {
    condition     = var.tls_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$", var.tls_secret_arn))
    error_message = "tls_secret_arn must be a Secrets Manager secret ARN."
  }
}

variable "first_user" {
  description = "SASL_SSL: the SCRAM-SHA-512 user added at boot, and the ARN of the Secrets Manager secret whose SecretString is its password, e.g. { name = \"admin\", password_secret_arn = \"arn:aws:secretsmanager:...\" }."
  type = object({
    name                = string
    password_secret_arn = string
  })
  default = null

  validation {
    condition     = var.first_user == null || (can(regex("^[A-Za-z0-9._-]{1,64}$", var.first_user.name)) && can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$", var.first_user.password_secret_arn)))
    error_message = "first_user.name must be 1-64 letters, digits, '.', '_' or '-', and password_secret_arn a Secrets Manager secret ARN."
  }
}

variable "secrets_kms_key_arn" {
  description = "The customer managed KMS key the two secrets are encrypted with, if not Secrets Manager's own key: the broker may decrypt with it through Secrets Manager only."
  type        = string
  default     = null

  validation {
    condition     = var.secrets_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.secrets_kms_key_arn))
    error_message = "secrets_kms_key_arn must be a KMS key ARN."
  }
}

variable "advertise_address" {
  description = "Which of the broker's addresses Kafka clients are told to connect to: \"private\" (clients inside the VPC, no data-transfer charge) or \"public\" (clients on the internet)."
  type        = string
  default     = "private"

  validation {
    condition     = contains(["private", "public"], var.advertise_address)
    error_message = "advertise_address must be \"private\" or \"public\"."
  }
}

# ---------------------------------------------------------------------------
# Broker instance
# ---------------------------------------------------------------------------

variable "instance_type" {
  description = "EC2 instance type of the broker. The default has local NVMe instance storage for the hot tier; types without it keep the hot tier on the root EBS volume."
  type        = string
  default     = "i4i.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must look like i4i.large."
  }
}

variable "ami_id" {
  description = "AMI for the instances. Null uses the latest Amazon Linux 2023 for the instance type's architecture; a custom AMI must be a dnf-based Amazon Linux 2023 derivative."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]+$", var.ami_id))
    error_message = "ami_id must look like ami-0123abcd."
  }
}

variable "root_volume_size_gb" {
  description = "Size of each instance's root gp3 volume in GiB. It holds the hot tier when the broker type has no instance storage."
  type        = number
  default     = 30

  validation {
    condition     = var.root_volume_size_gb >= 8 && var.root_volume_size_gb <= 16384
    error_message = "root_volume_size_gb must be between 8 and 16384."
  }
}

variable "tierlog_package" {
  description = "What `pip install` gets for tierlog: a PyPI requirement (\"tierlog\", \"tierlog==0.1.0\"), a git URL (\"tierlog @ git+https://...\") or a wheel URL."
  type        = string
  default     = "tierlog"

  validation {
    # It lands inside single quotes in a shell script.
    condition     = length(trimspace(var.tierlog_package)) > 0 && !can(regex("['\\n\\r\\\\]", var.tierlog_package))
    error_message = "tierlog_package must be non-empty and contain no single quote, backslash or newline."
  }
}

variable "broker_conf" {
  description = "Broker properties written to the broker's properties file, e.g. { \"log.segment.bytes\" = \"268435456\", \"log.local.retention.bytes\" = \"10737418240\" }."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for key, value in var.broker_conf : can(regex("^[a-z][a-z0-9._-]*$", key)) && !can(regex("[\\n\\r]", value))])
    error_message = "broker_conf keys must be property names like log.segment.bytes, and values must be single lines."
  }

  validation {
    # The user data works out the advertised address at boot from instance metadata.
    condition     = !contains(keys(var.broker_conf), "advertised.listeners")
    error_message = "advertised.listeners is set by the module from advertise_address; leave it out of broker_conf."
  }

  validation {
    # The listeners and their security come from kafka_security_protocol and the secrets.
    condition     = !anytrue([for key in keys(var.broker_conf) : key == "listeners" || startswith(key, "listener.") || startswith(key, "ssl.") || startswith(key, "sasl.")])
    error_message = "listeners, listener.*, ssl.* and sasl.* are set by the module from kafka_security_protocol; leave them out of broker_conf."
  }
}

# ---------------------------------------------------------------------------
# Optional benchmark client
# ---------------------------------------------------------------------------

variable "bench_enabled" {
  description = "Create a second instance that runs `tierlog bench` against the broker once it is healthy."
  type        = bool
  default     = false
}

variable "bench_instance_type" {
  description = "EC2 instance type of the benchmark client."
  type        = string
  default     = "c6i.xlarge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.bench_instance_type))
    error_message = "bench_instance_type must look like c6i.xlarge."
  }
}

variable "bench_package" {
  description = "What `pip install` gets on the benchmark client. Null uses tierlog_package; set e.g. \"tierlog[bench]\" if the benchmark needs its extras."
  type        = string
  default     = null

  validation {
    condition     = var.bench_package == null || (length(trimspace(coalesce(var.bench_package, " "))) > 0 && !can(regex("['\\n\\r\\\\]", coalesce(var.bench_package, " "))))
    error_message = "bench_package must be null, or non-empty with no single quote, backslash or newline."
  }
}

variable "bench_extra_args" {
  description = "Extra arguments appended to the `tierlog bench` command line, one per element, e.g. [\"--duration\", \"300\"]."
  type        = list(string)
  default     = []

  validation {
    # Joined with spaces into a systemd ExecStart line, so nothing that needs quoting.
    condition     = alltrue([for arg in var.bench_extra_args : can(regex("^[A-Za-z0-9_./:=,@+-]+$", arg))])
    error_message = "bench_extra_args elements may hold only letters, digits and _ . / : = , @ + - (no spaces or quotes)."
  }
}
