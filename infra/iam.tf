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
# Execution roles: one per function of local.functions, each with the one
# inline policy of local.function_policies (the documents below)
# ---------------------------------------------------------------------------

resource "aws_iam_role" "function" {
  for_each           = local.functions
  name               = "${var.name_prefix}-${each.key}"
  description        = "Execution role of the ${var.name_prefix}-${each.key} function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume_role.json
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions
  name     = each.key
  role     = aws_iam_role.function[each.key].id
  policy   = local.function_policies[each.key]
}

resource "aws_iam_role_policy_attachment" "function_xray" {
  for_each   = { for name, f in local.functions : name => f if var.enable_xray }
  role       = aws_iam_role.function[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
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

data "aws_iam_policy_document" "list_devices" {
  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function["list-devices"].arn}:*"]
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

data "aws_iam_policy_document" "get_recovery_key" {
  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function["get-recovery-key"].arn}:*"]
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

# ---------------------------------------------------------------------------
# manage-keys
# ---------------------------------------------------------------------------
#
# The key lifecycle's write routes (escrow by devices or an MDM sync job,
# device enrolment and retirement, rotation requests, tenant settings,
# incidents).
#
# Its role seals keys but can never read one back: kms:Encrypt only, bound to
# the recovery-key encryption context, and no kms:Decrypt anywhere (nor does
# the recovery-key CMK policy name it). It writes the devices table only,
# plus the audit table, since every write it makes is audited: PutItem there
# (append-only, like the other functions). On the rate-limit table it only
# counts its callers' refusals: a write refused for lack of the route's
# permission is audited within the caller's hourly cap of denied events,
# the same counter item get-recovery-key keeps for refused retrievals.


data "aws_iam_policy_document" "manage_keys" {
  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function["manage-keys"].arn}:*"]
  }

  # Reads the device and tenant items it changes (BatchGetItem, GetItem)
  # and the by_rotation index. Writes are transactions; DynamoDB authorizes
  # them by their per-item actions. Nothing is deleted: retiring a device
  # sets its items' TTL (UpdateItem) and restoring clears it, so DynamoDB
  # deletes a retired device only when its retention ends. Incidents are items of the tenant's
  # partition (T#<tenant> / INCIDENT#...) plus an attribute of the tenant
  # item, written in one transaction with the audit Put (an Update of the
  # tenant item conditioned on its settings version, so no ConditionCheck);
  # listing them is a Query of that partition.
  statement {
    sid    = "ReadAndWriteDevices"
    effect = "Allow"
    actions = [
      "dynamodb:BatchGetItem",
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:Query",
      "dynamodb:UpdateItem",
    ]
    resources = [aws_dynamodb_table.devices.arn]
  }

  statement {
    sid       = "QueryRotationRequests"
    effect    = "Allow"
    actions   = ["dynamodb:Query"]
    resources = ["${aws_dynamodb_table.devices.arn}/index/by_rotation"]
  }

  # Every write is audited, in the same transaction. Append-only: PutItem
  # with attribute_not_exists(pk), never Update/Delete.
  statement {
    sid       = "AppendAuditEvents"
    effect    = "Allow"
    actions   = ["dynamodb:PutItem"]
    resources = [aws_dynamodb_table.audit.arn]
  }

  # A refused write's audit Put goes with an Update of the caller's hourly
  # count of denied events (pk <tenant>#<user>#denied#<hour>), in one
  # TransactWriteItems. Those counter items only: never a retrieval's
  # rate-limit window.
  statement {
    sid       = "CountDeniedWrites"
    effect    = "Allow"
    actions   = ["dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.rate_limits.arn]

    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["*#denied#*"]
    }

    condition {
      test     = "Null"
      variable = "dynamodb:LeadingKeys"
      values   = ["false"]
    }
  }

  # The role's only KMS permission: seal keys with the recovery-key CMK, only
  # with the encryption context the code binds to every key. The key policy
  # delegates Encrypt to IAM (DelegateEncryptWithContextToIam in kms.tf) and
  # names no one but the key function for Decrypt.
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
#
# The scheduled sync's role (entra_sync.tf) holds the same grants pinned to
# its one tenant, so they are written once, below, for both: one policy
# document per principal in local.entra_sync_scopes.

locals {
  # Who runs the sync and which tenant's items it may touch: `cli`, this
  # managed policy (any tenant: the operator's --tenant) and, when
  # var.entra_sync is set, `function`, the scheduled function's role,
  # pinned to var.entra_sync.tenant_id (its KMS grant too: `pin`).
  entra_sync_any_tenant = { tenant = "*", pin = [] }
  entra_sync_scopes = local.entra_sync_enabled ? {
    cli      = local.entra_sync_any_tenant
    function = { tenant = var.entra_sync.tenant_id, pin = [var.entra_sync.tenant_id] }
  } : { cli = local.entra_sync_any_tenant }
}

resource "aws_iam_policy" "entra_sync" {
  name        = "${var.name_prefix}-entra-sync"
  description = "Copy BitLocker recovery keys from Entra ID into ${var.name_prefix} (portal sync entra)"
  policy      = data.aws_iam_policy_document.entra_sync["cli"].json
}

data "aws_iam_policy_document" "entra_sync" {
  for_each = local.entra_sync_scopes

  # Seal only, with the encryption context the code binds to every key;
  # never kms:Decrypt.
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

    # A pinned principal seals its own tenant's keys only.
    dynamic "condition" {
      for_each = each.value.pin
      content {
        test     = "StringEquals"
        variable = "kms:EncryptionContext:tenant_id"
        values   = [condition.value]
      }
    }
  }

  # Device items (D#<tenant>#...) and, read-only, the tenant item
  # (T#<tenant>) for the tenant's policy: one BatchGetItem per few devices
  # (which key IDs are held, so only new keys are read from Graph).
  statement {
    sid       = "ReadDevicesAndTenant"
    effect    = "Allow"
    actions   = ["dynamodb:BatchGetItem"]
    resources = [aws_dynamodb_table.devices.arn]

    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["D#${each.value.tenant}#*", "T#${each.value.tenant}"]
    }

    condition {
      test     = "Null"
      variable = "dynamodb:LeadingKeys"
      values   = ["false"]
    }
  }

  # Writes device items only, never a tenant item (T#..., the settings and
  # the open incident) nor another tenant's devices.
  statement {
    sid       = "WriteDevices"
    effect    = "Allow"
    actions   = ["dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.devices.arn]

    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["D#${each.value.tenant}#*"]
    }

    condition {
      test     = "Null"
      variable = "dynamodb:LeadingKeys"
      values   = ["false"]
    }
  }

  # Every write is audited (actor sync:entra), in the same transaction.
  # Its own events only: pk <tenant>#sync:entra#<request>#<event>.
  statement {
    sid       = "AppendAuditEvents"
    effect    = "Allow"
    actions   = ["dynamodb:PutItem"]
    resources = [aws_dynamodb_table.audit.arn]

    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["${each.value.tenant}#sync:entra#*"]
    }

    condition {
      test     = "Null"
      variable = "dynamodb:LeadingKeys"
      values   = ["false"]
    }
  }

  # Its own audit events only (by_actor partition <tenant>#sync:entra).
  statement {
    sid       = "QueryOwnAuditEvents"
    effect    = "Allow"
    actions   = ["dynamodb:Query"]
    resources = ["${aws_dynamodb_table.audit.arn}/index/by_actor"]

    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["${each.value.tenant}#sync:entra"]
    }

    condition {
      test     = "Null"
      variable = "dynamodb:LeadingKeys"
      values   = ["false"]
    }
  }
}
