terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}

# Region and credentials come from the usual AWS environment
# (AWS_REGION / AWS_PROFILE / instance or SSO credentials).
provider "aws" {
  default_tags {
    tags = merge({ Application = var.name_prefix }, var.tags)
  }
}
