# KMS keys.
#
# Three customer managed keys, each with a single purpose (a fourth, for the
# optional alarm topic, is in monitoring.tf):
#
# - recovery_keys: seals the BitLocker recovery keys (envelope ciphertexts in
#   the devices table's `sealed` map). Only the get-recovery-key role (and
#   the operators of keys_verify_principal_arns) may Decrypt, only IAM
#   grants (import policy, manage-keys role) may Encrypt, and all only with the
#   encryption context the code binds to every key (tenant_id, device_id,
#   key_id; see KMS_CONTEXT_KEYS in src/adapters/aws/schema.rs).
#
# - tables: DynamoDB server-side encryption of all three tables. It is a
#   separate key so that table access never needs a KMS permission in an IAM
#   policy: its key policy lets any principal of this account use it *through
#   DynamoDB* (kms:ViaService + kms:CallerAccount), so who can read a table is
#   decided by DynamoDB IAM permissions alone. That is what allows the
#   list-devices role to carry no kms:* permission at all, while the
#   recovery-key CMK stays out of its reach. Had the recovery-key CMK been used
#   for SSE, the list role would need kms:Decrypt on it (via DynamoDB) and the
#   separation would rest on a condition instead of on the absence of a grant.
#
# - logs: encryption of the CloudWatch log groups (function logs and API access
#   logs), usable only by the CloudWatch Logs service for these log groups.
#
# In every key policy the account root principal keeps the administrative
# actions (so the key can never become unmanageable) but not the cryptographic
# ones: a broad IAM grant such as kms:Decrypt on "*" does not reach these keys.
# Note that whoever may call kms:PutKeyPolicy in IAM can still rewrite these
# policies; restrict KMS administration to break-glass roles.

locals {
  account_root_arn = "arn:${local.partition}:iam::${local.account_id}:root"

  # Administrative, non-cryptographic KMS actions kept by the account root.
  # (No kms:CreateGrant: a grant could hand out Decrypt around the policy.)
  kms_admin_actions = [
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:Describe*",
    "kms:Disable*",
    "kms:Enable*",
    "kms:Get*",
    "kms:List*",
    "kms:Put*",
    "kms:RetireGrant",
    "kms:Revoke*",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:Update*",
  ]
}

# ---------------------------------------------------------------------------
# Recovery-key CMK
# ---------------------------------------------------------------------------

resource "aws_kms_key" "recovery_keys" {
  description              = "${var.name_prefix}: seals BitLocker recovery keys"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_in_days
  policy                   = data.aws_iam_policy_document.recovery_keys_key_policy.json
}

resource "aws_kms_alias" "recovery_keys" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.recovery_keys.key_id
}

data "aws_iam_policy_document" "recovery_keys_key_policy" {
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" means this key only; besides key administration by the account root, use is limited to Encrypt (via IAM) and Decrypt (key function role), both bound to the encryption context.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" is the only valid value and means this key.
  statement {
    sid       = "AccountAdministration"
    effect    = "Allow"
    actions   = local.kms_admin_actions
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root_arn]
    }
  }

  # Lets IAM policies in this account grant Encrypt (the import policy in
  # iam.tf), and only with the recovery-key encryption context.
  statement {
    sid       = "DelegateEncryptWithContextToIam"
    effect    = "Allow"
    actions   = ["kms:Encrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root_arn]
    }

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = ["tenant_id", "device_id", "key_id"]
    }

    condition {
      test     = "Null"
      variable = "kms:EncryptionContextKeys"
      values   = ["false"]
    }
  }

  # The only principals that can ever decrypt a recovery key: the key
  # function, and the operators named in keys_verify_principal_arns (none by
  # default), who run `portal keys verify` with the keys_verify policy.
  statement {
    sid       = "KeyFunctionDecryptWithContext"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = concat([aws_iam_role.function["get-recovery-key"].arn], var.keys_verify_principal_arns)
    }

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = ["tenant_id", "device_id", "key_id"]
    }

    condition {
      test     = "Null"
      variable = "kms:EncryptionContextKeys"
      values   = ["false"]
    }
  }
}

# ---------------------------------------------------------------------------
# DynamoDB SSE CMK
# ---------------------------------------------------------------------------

resource "aws_kms_key" "tables" {
  description              = "${var.name_prefix}: DynamoDB server-side encryption"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_in_days
  policy                   = data.aws_iam_policy_document.tables_key_policy.json
}

resource "aws_kms_alias" "tables" {
  name          = "alias/${var.name_prefix}-tables"
  target_key_id = aws_kms_key.tables.key_id
}

data "aws_iam_policy_document" "tables_key_policy" {
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" means this key only; cryptographic use is limited to calls made through DynamoDB from this account.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" is the only valid value and means this key.
  statement {
    sid       = "AccountAdministration"
    effect    = "Allow"
    actions   = local.kms_admin_actions
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root_arn]
    }
  }

  # AWS's documented policy for a DynamoDB SSE key: principals of this account
  # may use the key, but only through DynamoDB in this region. Table access is
  # therefore governed entirely by DynamoDB IAM permissions.
  statement {
    sid    = "UseThroughDynamoDbFromThisAccount"
    effect = "Allow"
    actions = [
      "kms:CreateGrant",
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey*",
      "kms:ReEncrypt*",
    ]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["dynamodb.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "DynamoDbDescribeKey"
    effect    = "Allow"
    actions   = ["kms:Describe*", "kms:Get*", "kms:List*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["dynamodb.amazonaws.com"]
    }
  }
}

# ---------------------------------------------------------------------------
# CloudWatch Logs CMK
# ---------------------------------------------------------------------------

resource "aws_kms_key" "logs" {
  description              = "${var.name_prefix}: CloudWatch Logs encryption"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_in_days
  policy                   = data.aws_iam_policy_document.logs_key_policy.json
}

resource "aws_kms_alias" "logs" {
  name          = "alias/${var.name_prefix}-logs"
  target_key_id = aws_kms_key.logs.key_id
}

data "aws_iam_policy_document" "logs_key_policy" {
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" means this key only; cryptographic use is limited to CloudWatch Logs for this deployment's log groups.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" is the only valid value and means this key.
  statement {
    sid       = "AccountAdministration"
    effect    = "Allow"
    actions   = local.kms_admin_actions
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root_arn]
    }
  }

  statement {
    sid    = "CloudWatchLogsForThisDeployment"
    effect = "Allow"
    actions = [
      "kms:Decrypt*",
      "kms:Describe*",
      "kms:Encrypt*",
      "kms:GenerateDataKey*",
      "kms:ReEncrypt*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        for name in concat(values(local.function_log_groups), [local.access_log_group_name]) :
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${name}"
      ]
    }
  }
}
