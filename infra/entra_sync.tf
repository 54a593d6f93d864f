# The scheduled Entra sync (optional, var.entra_sync): a fourth function,
# functions/entra-sync, that runs `portal sync entra`'s code on an
# EventBridge Scheduler schedule (hourly by default). Everything it needs is
# in this file; with var.entra_sync = null (the default) none of it exists.
#
# - Its client secret is a Secrets Manager secret encrypted with a CMK of
#   its own. The value is put out of band (infra/README.md); only the
#   function's role may read it: the key policy lets no one else decrypt
#   it, and the secret's resource policy denies GetSecretValue to everyone
#   else.
# - Its role seals keys but can never read one back: kms:Encrypt on the
#   recovery-key CMK with the encryption context, no kms:Decrypt on it
#   anywhere (nor does that key's policy name this role). It reads the
#   device and tenant items of the devices Entra lists (which key IDs the
#   store holds), writes device items and appends audit events, with the
#   grants of the entra_sync managed policy (iam.tf), written once for both
#   and here pinned to its tenant.
# - A failed run fails the invocation (Lambda's Errors metric: alarm); a
#   finished run writes EntraSyncSucceeded (alarm when none in 25 hours).

locals {
  entra_sync_enabled        = var.entra_sync != null
  entra_sync_count          = local.entra_sync_enabled ? 1 : 0
  entra_sync_function_name  = "${var.name_prefix}-entra-sync"
  entra_sync_log_group_name = "/aws/lambda/${local.entra_sync_function_name}"
  entra_sync_secret_name    = "${var.name_prefix}-entra-client-secret"
  # Secrets Manager appends "-" and six random characters to the name.
  entra_sync_secret_arn_pattern = "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${local.entra_sync_secret_name}-??????"
  entra_sync_zip_path           = try(var.entra_sync.zip, "../target/lambda/entra-sync/bootstrap.zip")
  entra_sync_zip                = startswith(local.entra_sync_zip_path, "/") ? local.entra_sync_zip_path : "${path.module}/${local.entra_sync_zip_path}"
}

# ---------------------------------------------------------------------------
# The client secret and its key
# ---------------------------------------------------------------------------

resource "aws_kms_key" "entra_sync" {
  count                    = local.entra_sync_count
  description              = "${var.name_prefix}: the Entra sync's client secret and logs"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_in_days
  policy                   = data.aws_iam_policy_document.entra_sync_key_policy[0].json
}

resource "aws_kms_alias" "entra_sync" {
  count         = local.entra_sync_count
  name          = "alias/${var.name_prefix}-entra-sync"
  target_key_id = aws_kms_key.entra_sync[0].key_id
}

data "aws_iam_policy_document" "entra_sync_key_policy" {
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" means this key only; besides key administration by the account root, use is limited to Secrets Manager for this one secret and CloudWatch Logs for this one log group.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" is the only valid value and means this key.
  count = local.entra_sync_count

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

  # Whoever IAM lets put the secret's value (aws secretsmanager
  # put-secret-value) may encrypt it, through Secrets Manager only. No
  # Decrypt: an administrator cannot read the value back.
  statement {
    sid       = "PutSecretValueViaIam"
    effect    = "Allow"
    actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:SecretARN"
      values   = [local.entra_sync_secret_arn_pattern]
    }
  }

  # The only principal that can ever decrypt the secret: the function's
  # role, through Secrets Manager, for this secret.
  statement {
    sid       = "FunctionReadsTheSecret"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.entra_sync[0].arn]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:SecretARN"
      values   = [local.entra_sync_secret_arn_pattern]
    }
  }

  statement {
    sid = "CloudWatchLogsForTheFunction"
    actions = [
      "kms:Decrypt*",
      "kms:Describe*",
      "kms:Encrypt*",
      "kms:GenerateDataKey*",
      "kms:ReEncrypt*",
    ]
    effect    = "Allow"
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.entra_sync_log_group_name}"]
    }
  }
}

resource "aws_secretsmanager_secret" "entra_sync" {
  #checkov:skip=CKV2_AWS_57:An Entra client secret is rotated in Entra (a new secret on the app registration), then put here with put-secret-value (infra/README.md); a rotation Lambda would need Application.ReadWrite.All in Entra, far more than the sync's read permissions. The function reads the secret on every run, so a new value applies at the next run.
  count                   = local.entra_sync_count
  name                    = local.entra_sync_secret_name
  description             = "Client secret of the Entra app registration ${var.name_prefix}'s scheduled sync signs in with (value put out of band)"
  kms_key_id              = aws_kms_key.entra_sync[0].arn
  recovery_window_in_days = 7
}

# Belt and braces: even an IAM grant elsewhere cannot read the value.
resource "aws_secretsmanager_secret_policy" "entra_sync" {
  count      = local.entra_sync_count
  secret_arn = aws_secretsmanager_secret.entra_sync[0].arn
  policy     = data.aws_iam_policy_document.entra_sync_secret_policy[0].json
}

data "aws_iam_policy_document" "entra_sync_secret_policy" {
  count = local.entra_sync_count

  statement {
    sid       = "OnlyTheFunctionReads"
    effect    = "Deny"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "aws:PrincipalArn"
      values   = [aws_iam_role.entra_sync[0].arn]
    }
  }
}

# ---------------------------------------------------------------------------
# Role
# ---------------------------------------------------------------------------

resource "aws_iam_role" "entra_sync" {
  count              = local.entra_sync_count
  name               = "${var.name_prefix}-entra-sync"
  description        = "Execution role of the ${local.entra_sync_function_name} function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume_role.json
}

data "aws_iam_policy_document" "entra_sync_function" {
  count = local.entra_sync_count

  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.entra_sync[0].arn}:*"]
  }

  # Its own secret only, every run (rotation applies at the next run). The
  # secret's key policy lets this role decrypt it through Secrets Manager.
  statement {
    sid       = "ReadClientSecret"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.entra_sync[0].arn]
  }
}

resource "aws_iam_role_policy" "entra_sync_function" {
  count  = local.entra_sync_count
  name   = "entra-sync"
  role   = aws_iam_role.entra_sync[0].id
  policy = data.aws_iam_policy_document.entra_sync_function[0].json
}

# What it syncs: the grants of `portal sync entra` (iam.tf), written once
# for both, here pinned to var.entra_sync.tenant_id: it reads the device
# and tenant items of the devices Entra lists, enrols or updates each
# device and escrows each new key through the escrow API's conditional
# transactions (authorized by their per-item Put and Update), each with its
# audit event (actor sync:entra), and seals with the recovery-key CMK
# (Encrypt only, this tenant's context). No Delete, no Scan: a sync never
# removes what Entra no longer lists.
resource "aws_iam_role_policy" "entra_sync_grants" {
  count  = local.entra_sync_count
  name   = "entra-sync-grants"
  role   = aws_iam_role.entra_sync[0].id
  policy = data.aws_iam_policy_document.entra_sync["function"].json
}

resource "aws_iam_role_policy_attachment" "entra_sync_xray" {
  count      = local.entra_sync_enabled && var.enable_xray ? 1 : 0
  role       = aws_iam_role.entra_sync[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

# ---------------------------------------------------------------------------
# Function and its log group
# ---------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "entra_sync" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 90 days, set to 365+ where policy requires). These are operational logs; the record of every write is the audit table (point-in-time recovery, no TTL).
  count             = local.entra_sync_count
  name              = local.entra_sync_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.entra_sync[0].arn
}

resource "aws_lambda_function" "entra_sync" {
  #checkov:skip=CKV_AWS_116:A failed run is alarmed (entra_sync_failed) and the next scheduled run repeats it (keys already stored are not read again); the schedule's event carries nothing a dead-letter queue could keep.
  #checkov:skip=CKV_AWS_117:The function reaches only public endpoints (DynamoDB, KMS, Secrets Manager, Microsoft Graph and Entra's token endpoint); there is no private resource to reach, and a VPC would add NAT cost without narrowing access (IAM does that).
  #checkov:skip=CKV_AWS_272:The zip is built from this repository and deployed by the same Terraform run (source_code_hash pins it); there is no separate publisher whose signature Lambda could verify.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (tenant and client IDs, URLs, the secret's ARN, table prefix, key ARN): the client secret is in Secrets Manager, and the code refuses PORTAL_ENTRA_CLIENT_SECRET in the function's environment.
  count         = local.entra_sync_count
  function_name = local.entra_sync_function_name
  description   = "Recovery portal: copy new BitLocker recovery keys from Entra ID on a schedule (seals, never decrypts)"
  role          = aws_iam_role.entra_sync[0].arn

  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [local.architecture]

  filename         = local.entra_sync_zip
  source_code_hash = filebase64sha256(local.entra_sync_zip)

  memory_size = var.entra_sync.memory_size
  timeout     = var.entra_sync.timeout
  # One run at a time: a slow run and the next scheduled one never overlap.
  reserved_concurrent_executions = 1

  environment {
    variables = {
      PORTAL_BACKEND                 = "aws"
      PORTAL_TABLE_PREFIX            = var.name_prefix
      PORTAL_KMS_KEY_ID              = aws_kms_key.recovery_keys.arn
      PORTAL_METRICS_NAMESPACE       = var.metrics_namespace
      PORTAL_SYNC_TENANT             = var.entra_sync.tenant_id
      PORTAL_ENTRA_TENANT_ID         = var.entra_sync.entra_tenant_id
      PORTAL_ENTRA_CLIENT_ID         = var.entra_sync.client_id
      PORTAL_ENTRA_CLIENT_SECRET_ARN = aws_secretsmanager_secret.entra_sync[0].arn
      PORTAL_GRAPH_URL               = var.entra_sync.graph_url
      PORTAL_ENTRA_LOGIN_URL         = var.entra_sync.login_url
    }
  }

  tracing_config {
    mode = local.tracing_mode
  }

  logging_config {
    log_format            = "JSON"
    application_log_level = var.application_log_level
    system_log_level      = var.system_log_level
    log_group             = aws_cloudwatch_log_group.entra_sync[0].name
  }

  depends_on = [aws_iam_role_policy.entra_sync_function, aws_iam_role_policy.entra_sync_grants]

  lifecycle {
    precondition {
      condition     = local.build != null
      error_message = "No build manifest at ${local.build_manifest}: build the functions with scripts/package.sh (it writes the zips and the manifest) before plan or apply."
    }
    precondition {
      condition     = local.build == null || try(local.build.zips["entra-sync"], null) == filebase64sha256(local.entra_sync_zip)
      error_message = "${local.entra_sync_zip} is not the zip scripts/package.sh recorded in ${local.build_manifest} (built another way, or changed since), so its architecture is unknown: run scripts/package.sh again."
    }
    precondition {
      condition     = local.build == null || contains(["arm64", "x86_64"], coalesce(local.architecture, "-"))
      error_message = "${local.build_manifest} names no architecture (arm64 or x86_64): run scripts/package.sh again."
    }
    precondition {
      condition     = local.build == null || var.architecture == null || var.architecture == local.architecture
      error_message = "architecture = \"${coalesce(var.architecture, "-")}\" but the functions were built for ${coalesce(local.architecture, "-")} (${local.build_manifest}): run scripts/package.sh ${coalesce(var.architecture, "-")}, or drop the architecture setting to deploy what was built."
    }
  }
}

# A failed run is not retried by Lambda: the next scheduled run is the retry.
resource "aws_lambda_function_event_invoke_config" "entra_sync" {
  count                        = local.entra_sync_count
  function_name                = aws_lambda_function.entra_sync[0].function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 3600
}

# ---------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------

resource "aws_iam_role" "entra_sync_scheduler" {
  count              = local.entra_sync_count
  name               = "${var.name_prefix}-entra-sync-scheduler"
  description        = "EventBridge Scheduler invokes ${local.entra_sync_function_name}"
  assume_role_policy = data.aws_iam_policy_document.entra_sync_scheduler_assume[0].json
}

data "aws_iam_policy_document" "entra_sync_scheduler_assume" {
  count = local.entra_sync_count

  statement {
    sid     = "SchedulerAssumeRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    # Only schedules of this account (confused deputy).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "entra_sync_scheduler" {
  count = local.entra_sync_count

  statement {
    sid       = "InvokeTheSync"
    effect    = "Allow"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.entra_sync[0].arn]
  }
}

resource "aws_iam_role_policy" "entra_sync_scheduler" {
  count  = local.entra_sync_count
  name   = "invoke-entra-sync"
  role   = aws_iam_role.entra_sync_scheduler[0].id
  policy = data.aws_iam_policy_document.entra_sync_scheduler[0].json
}

resource "aws_scheduler_schedule" "entra_sync" {
  #checkov:skip=CKV_AWS_297:The schedule's only data is its target and the input "{}"; a customer managed key would protect nothing.
  count                        = local.entra_sync_count
  name                         = "${var.name_prefix}-entra-sync"
  description                  = "Runs ${local.entra_sync_function_name}: copy new recovery keys from Entra ID"
  schedule_expression          = var.entra_sync.schedule
  schedule_expression_timezone = "UTC"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.entra_sync[0].arn
    role_arn = aws_iam_role.entra_sync_scheduler[0].arn
    input    = jsonencode({})

    # The next scheduled run is the retry (and the alarm says it failed).
    retry_policy {
      maximum_retry_attempts = 0
    }
  }
}

# ---------------------------------------------------------------------------
# Alarms
# ---------------------------------------------------------------------------

# A run that failed: the code fails the invocation on any failed run, so
# Lambda's Errors metric counts it (and crashes and timeouts too).
resource "aws_cloudwatch_metric_alarm" "entra_sync_failed" {
  count               = local.entra_sync_count
  alarm_name          = "${local.entra_sync_function_name}-failed"
  alarm_description   = "A scheduled Entra sync run failed (its log says why; the next run resumes where it stopped)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.entra_sync[0].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# No finished run in 25 hours (25 hourly periods without one): the schedule
# stopped, the function cannot start, or every run fails. Missing data is
# breaching, since a sync that never runs writes no metric at all.
resource "aws_cloudwatch_metric_alarm" "entra_sync_stale" {
  count               = local.entra_sync_count
  alarm_name          = "${local.entra_sync_function_name}-no-success-25h"
  alarm_description   = "No scheduled Entra sync run has succeeded in 25 hours: new keys escrowed in Entra are not in the portal."
  namespace           = var.metrics_namespace
  metric_name         = "EntraSyncSucceeded"
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 25
  datapoints_to_alarm = 25
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
