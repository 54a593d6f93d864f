# IAM: one execution role per function, least privilege, plus managed
# policies for the administrators who import recovery keys and the operators
# who verify them.
#
# Every policy is an aws_iam_policy_document so that tests/infra/terraform.rs can read
# the statements from the HCL and check the properties the design relies on.

data "aws_iam_policy_document" "lambda_assume_role" {
  statement {
    sid     = "LambdaAssumeRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

# ---------------------------------------------------------------------------
# list-devices
# ---------------------------------------------------------------------------
#
# Lists devices, recovery-key metadata and audit events (read only). It never sees
# ciphertext: device items in the devices table carry the sealed keys, so the
# role may query the by_owner / by_key indexes (which project no ciphertext)
# but not the table. It has no KMS permission of any kind: the tables are
# encrypted with the tables CMK, which DynamoDB uses on the caller's behalf
# (see kms.tf), and the recovery-key CMK does not name this role.

resource "aws_iam_role" "list_devices" {
  name               = "${var.name_prefix}-list-devices"
  description        = "Execution role of the ${local.list_function_name} function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume_role.json
}

data "aws_iam_policy_document" "list_devices" {
  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.list_devices.arn}:*"]
  }

  statement {
    sid     = "QueryDeviceIndexes"
    effect  = "Allow"
    actions = ["dynamodb:Query"]
    resources = [
      "${aws_dynamodb_table.devices.arn}/index/by_owner",
      "${aws_dynamodb_table.devices.arn}/index/by_key",
    ]
  }

  # The function must read the caller's tenant item (pk = T#<tenant>,
  # sk = TENANT), which lives in the devices table next to the device items
  # that hold ciphertext. dynamodb:LeadingKeys is the partition key of the
  # requested item, so this grant reaches tenant items only and never a
  # D#... device item. GetItem always names its key; the Null condition makes
  # sure the ForAllValues test can never pass vacuously.
  statement {
    sid       = "GetTenantItemsOnly"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem"]
    resources = [aws_dynamodb_table.devices.arn]

    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["T#*"]
    }

    condition {
      test     = "Null"
      variable = "dynamodb:LeadingKeys"
      values   = ["false"]
    }
  }

  statement {
    sid     = "QueryAuditIndexes"
    effect  = "Allow"
    actions = ["dynamodb:Query"]
    resources = [
      "${aws_dynamodb_table.audit.arn}/index/by_time",
      "${aws_dynamodb_table.audit.arn}/index/by_device",
      "${aws_dynamodb_table.audit.arn}/index/by_actor",
    ]
  }

  # No write to the audit table: this function only reads the trail.
  # The attempts that are audited (key retrievals, granted or denied) are
  # all served by get-recovery-key.
}

resource "aws_iam_role_policy" "list_devices" {
  name   = "list-devices"
  role   = aws_iam_role.list_devices.id
  policy = data.aws_iam_policy_document.list_devices.json
}

resource "aws_iam_role_policy_attachment" "list_devices_xray" {
  count      = var.enable_xray ? 1 : 0
  role       = aws_iam_role.list_devices.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

# ---------------------------------------------------------------------------
# get-recovery-key
# ---------------------------------------------------------------------------
#
# Reads the tenant and device items and the caller's rate-limit window (one
# BatchGetItem), then records the disclosure and the new window in one
# TransactWriteItems (audit Put + rate-limit Update + the device item's
# disclosed_at Update). Batch retrieval also queries the by_key index. A denied attempt is one
# TransactWriteItems too: its audit Put and the caller's hourly count of
# denied events (an item of the rate-limits table). DynamoDB authorizes a
# transaction by its per-item actions, so no TransactWriteItems action exists
# to grant. Finally it decrypts the sealed key with the recovery-key CMK.

resource "aws_iam_role" "get_recovery_key" {
  name               = "${var.name_prefix}-get-recovery-key"
  description        = "Execution role of the ${local.key_function_name} function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume_role.json
}

data "aws_iam_policy_document" "get_recovery_key" {
  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.get_recovery_key.arn}:*"]
  }

  statement {
    sid     = "ReadDevicesAndRateLimits"
    effect  = "Allow"
    actions = ["dynamodb:BatchGetItem"]
    resources = [
      aws_dynamodb_table.devices.arn,
      aws_dynamodb_table.rate_limits.arn,
    ]
  }

  # The tenant item on a listing-free path, and a superseded key, which is
  # stored apart from its device item.
  statement {
    sid       = "GetDeviceItems"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem"]
    resources = [aws_dynamodb_table.devices.arn]
  }

  statement {
    sid       = "UpdateRateLimits"
    effect    = "Allow"
    actions   = ["dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.rate_limits.arn]
  }

  # A granted disclosure marks the key's disclosed_at and the device's
  # rotation request on the device item, in the same TransactWriteItems as
  # its audit event (an Update item: authorized as dynamodb:UpdateItem).
  # Device items only (pk D#...), never the tenant item (T#...) that holds
  # the settings and the open incident.
  statement {
    sid       = "MarkDisclosedKeys"
    effect    = "Allow"
    actions   = ["dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.devices.arn]

    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["D#*"]
    }

    condition {
      test     = "Null"
      variable = "dynamodb:LeadingKeys"
      values   = ["false"]
    }
  }

  # Batch retrieval finds each key ID (or prefix) through the by_key index,
  # which projects no ciphertext.
  statement {
    sid       = "QueryKeyIndex"
    effect    = "Allow"
    actions   = ["dynamodb:Query"]
    resources = ["${aws_dynamodb_table.devices.arn}/index/by_key"]
  }

  # Append-only: PutItem with attribute_not_exists(pk), never Update/Delete.
  statement {
    sid       = "AppendAuditEvents"
    effect    = "Allow"
    actions   = ["dynamodb:PutItem"]
    resources = [aws_dynamodb_table.audit.arn]
  }

  # The role's only KMS permission, on the recovery-key CMK only, and only for
  # requests whose encryption context uses the context keys the code binds to
  # every sealed key (ciphertexts made without that context are out of reach).
  statement {
    sid       = "DecryptRecoveryKeysWithContext"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.recovery_keys.arn]

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

resource "aws_iam_role_policy" "get_recovery_key" {
  name   = "get-recovery-key"
  role   = aws_iam_role.get_recovery_key.id
  policy = data.aws_iam_policy_document.get_recovery_key.json
}

resource "aws_iam_role_policy_attachment" "get_recovery_key_xray" {
  count      = var.enable_xray ? 1 : 0
  role       = aws_iam_role.get_recovery_key.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

# ---------------------------------------------------------------------------
# Import (administrators)
# ---------------------------------------------------------------------------
#
# Attach to the user or role that runs `portal import`. It seals keys with the
# recovery-key CMK (Encrypt only, never Decrypt: importers cannot read keys
# back) and writes tenant, device and key-pointer items; the reads let it skip
# devices whose stored fingerprint is unchanged. A device moved to another
# owner is recorded in the audit trail (PutItem only: append-only). Table SSE
# needs no KMS permission here (tables CMK, see kms.tf).

resource "aws_iam_policy" "import" {
  name        = "${var.name_prefix}-import"
  description = "Import BitLocker recovery keys into ${var.name_prefix} (portal import)"
  policy      = data.aws_iam_policy_document.import.json
}

data "aws_iam_policy_document" "import" {
  statement {
    sid       = "SealRecoveryKeysWithContext"
    effect    = "Allow"
    actions   = ["kms:Encrypt"]
    resources = [aws_kms_key.recovery_keys.arn]

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

  statement {
    sid = "WriteDevices"
    actions = [
      "dynamodb:BatchGetItem",
      # Devices and key pointers are written and replaced in batches.
      "dynamodb:BatchWriteItem",
      "dynamodb:GetItem",
      "dynamodb:Query",
      # Tenant settings are updated in place (an open incident stays).
      "dynamodb:UpdateItem",
    ]
    resources = [aws_dynamodb_table.devices.arn]
  }

  # Ownership and settings changes are audited under the importer's name. Append-only:
  # PutItem with attribute_not_exists(pk), never Update/Delete.
  statement {
    sid       = "RecordOwnershipChanges"
    actions   = ["dynamodb:PutItem"]
    resources = [aws_dynamodb_table.audit.arn]
  }
}

# ---------------------------------------------------------------------------
# Key verification (operators)
# ---------------------------------------------------------------------------
#
# Attach to the operator role that runs `portal keys verify` against this
# deployment, and name that role in keys_verify_principal_arns: the
# recovery-key CMK's key policy does not delegate Decrypt to IAM, so this
# policy alone decrypts nothing. The command opens every stored key (Scan of
# the devices table) and records its
# run in the audit trail (PutItem only: append-only). Nothing in this
# configuration attaches it; it is the only grant of dynamodb:Scan here.

resource "aws_iam_policy" "keys_verify" {
  name        = "${var.name_prefix}-keys-verify"
  description = "Verify that every stored recovery key of ${var.name_prefix} opens (portal keys verify)"
  policy      = data.aws_iam_policy_document.keys_verify.json
}

data "aws_iam_policy_document" "keys_verify" {
  statement {
    sid       = "DecryptRecoveryKeysWithContext"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.recovery_keys.arn]

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

  # Every sealed key, a page at a time (one tenant's by a filter).
  statement {
    sid       = "ReadDevices"
    effect    = "Allow"
    actions   = ["dynamodb:Scan"]
    resources = [aws_dynamodb_table.devices.arn]
  }

  # Append-only: PutItem with attribute_not_exists(pk), never Update/Delete.
  statement {
    sid       = "RecordVerification"
    effect    = "Allow"
    actions   = ["dynamodb:PutItem"]
    resources = [aws_dynamodb_table.audit.arn]
  }
}

# ---------------------------------------------------------------------------
# Entra sync (administrators, or the scheduled job)
# ---------------------------------------------------------------------------
#
# Attach to the user or role that runs `portal sync entra`. It reads the
# devices Entra lists keys for (BatchGetItem of device and tenant items),
# enrols or updates them and escrows each new key through the same
# conditional writes as the escrow API (TransactWriteItems, authorized by
# its per-item Put and Update), each with its audit event (PutItem only:
# append-only). It seals with the recovery-key CMK (Encrypt only, with the
# encryption context): it can never read a key back. To report devices it
# synced before that Entra no longer lists, it queries the audit trail's
# by_actor index for its own events only (partition <tenant>#sync:entra).
# No delete, no Scan: a sync never removes what Entra no longer lists.

resource "aws_iam_policy" "entra_sync" {
  name        = "${var.name_prefix}-entra-sync"
  description = "Copy BitLocker recovery keys from Entra ID into ${var.name_prefix} (portal sync entra)"
  policy      = data.aws_iam_policy_document.entra_sync.json
}

data "aws_iam_policy_document" "entra_sync" {
  statement {
    sid       = "SealRecoveryKeysWithContext"
    effect    = "Allow"
    actions   = ["kms:Encrypt"]
    resources = [aws_kms_key.recovery_keys.arn]

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

  statement {
    sid    = "ReadAndWriteDevices"
    effect = "Allow"
    actions = [
      "dynamodb:BatchGetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
    ]
    resources = [aws_dynamodb_table.devices.arn]
  }

  statement {
    sid       = "AppendAuditEvents"
    effect    = "Allow"
    actions   = ["dynamodb:PutItem"]
    resources = [aws_dynamodb_table.audit.arn]
  }

  statement {
    sid       = "QueryOwnAuditEvents"
    effect    = "Allow"
    actions   = ["dynamodb:Query"]
    resources = ["${aws_dynamodb_table.audit.arn}/index/by_actor"]

    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["*#sync:entra"]
    }

    condition {
      test     = "Null"
      variable = "dynamodb:LeadingKeys"
      values   = ["false"]
    }
  }
}
