terraform {
  # 1.5 for check blocks; optional() object attributes are not used.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # aws_vpc_security_group_*_rule arrived in 5.x; 6.x is accepted too.
      version = ">= 5.0, < 7.0"
    }
  }
}
