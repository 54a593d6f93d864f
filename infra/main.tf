# Shared look-ups and names used by several files.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region

  # The three functions, each a custom-runtime `bootstrap` binary built by
  # cargo lambda and named after its key (also its binary, its zip's
  # directory and its entry in the build manifest). Everything else per
  # function (role, log group, integration) is a `for_each` over this map.
  # Only get-recovery-key can hold provisioned concurrency (lambda.tf).
  functions = {
    "list-devices" = {
      description             = "Recovery portal: list devices, recovery-key metadata and audit events"
      zip                     = var.list_devices_zip
      reserved_concurrency    = var.list_reserved_concurrency
      provisioned_concurrency = 0
    }
    "get-recovery-key" = {
      description             = "Recovery portal: disclose one BitLocker recovery key (audited, rate limited)"
      zip                     = var.get_recovery_key_zip
      reserved_concurrency    = var.key_reserved_concurrency
      provisioned_concurrency = var.key_provisioned_concurrency
    }
    "manage-keys" = {
      description             = "Recovery portal: escrow keys, enrol and retire devices, rotation requests, tenant settings (audited; seals, never decrypts)"
      zip                     = var.manage_keys_zip
      reserved_concurrency    = var.manage_reserved_concurrency
      provisioned_concurrency = 0
    }
  }

  # Each function's permissions (iam.tf), apart from the map above: the
  # documents name the log groups, which are made from the map.
  function_policies = {
    "list-devices"     = data.aws_iam_policy_document.list_devices.json
    "get-recovery-key" = data.aws_iam_policy_document.get_recovery_key.json
    "manage-keys"      = data.aws_iam_policy_document.manage_keys.json
  }

  # Log group names are fixed here (not read back from the resources) so the
  # logs key policy can name them without a dependency cycle.
  function_log_groups   = { for name, f in local.functions : name => "/aws/lambda/${var.name_prefix}-${name}" }
  access_log_group_name = "/aws/apigateway/${var.name_prefix}-access"

  # Zip paths: relative paths are relative to this module, absolute ones are
  # used as given.
  function_zips = { for name, f in local.functions : name => startswith(f.zip, "/") ? f.zip : "${path.module}/${f.zip}" }

  # What scripts/package.sh built: {"architecture": "arm64"|"x86_64",
  # "zips": {"<function>": "<base64 SHA-256 of its zip>"}}. The functions'
  # architecture comes from here, so the build and the deployment cannot
  # disagree; the preconditions in lambda.tf fail the plan when the manifest
  # is missing, describes other zips, or contradicts var.architecture.
  build_manifest = startswith(var.build_manifest, "/") ? var.build_manifest : "${path.module}/${var.build_manifest}"
  build          = fileexists(local.build_manifest) ? jsondecode(file(local.build_manifest)) : null
  architecture   = try(local.build.architecture, null)
}
