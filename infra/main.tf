# Shared look-ups and names used by several files.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region

  list_function_name = "${var.name_prefix}-list-devices"
  key_function_name  = "${var.name_prefix}-get-recovery-key"

  # Log group names are fixed here (not read back from the resources) so the
  # logs key policy can name them without a dependency cycle.
  list_log_group_name   = "/aws/lambda/${local.list_function_name}"
  key_log_group_name    = "/aws/lambda/${local.key_function_name}"
  access_log_group_name = "/aws/apigateway/${var.name_prefix}-access"

  # Zip paths: relative paths are relative to this module, absolute ones are
  # used as given.
  list_devices_zip     = startswith(var.list_devices_zip, "/") ? var.list_devices_zip : "${path.module}/${var.list_devices_zip}"
  get_recovery_key_zip = startswith(var.get_recovery_key_zip, "/") ? var.get_recovery_key_zip : "${path.module}/${var.get_recovery_key_zip}"

  # What scripts/package.sh built: {"architecture": "arm64"|"x86_64",
  # "zips": {"<function>": "<base64 SHA-256 of its zip>"}}. The functions'
  # architecture comes from here, so the build and the deployment cannot
  # disagree; the preconditions in lambda.tf fail the plan when the manifest
  # is missing, describes other zips, or contradicts var.architecture.
  build_manifest = startswith(var.build_manifest, "/") ? var.build_manifest : "${path.module}/${var.build_manifest}"
  build          = fileexists(local.build_manifest) ? jsondecode(file(local.build_manifest)) : null
  architecture   = try(local.build.architecture, null)
}
