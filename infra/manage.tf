# The third function, manage-keys: the key lifecycle's write routes (escrow
# by devices or an MDM sync job, device enrolment and retirement, rotation
# requests, tenant settings, incidents). Everything it needs is in this file
# except the one line naming its log group in the logs key policy (kms.tf).
#
# Its role seals keys but can never read one back: kms:Encrypt only, bound to
# the recovery-key encryption context, and no kms:Decrypt anywhere (nor does
# the recovery-key CMK policy name it). It writes the devices table only,
# plus the audit table, since every write it makes is audited: PutItem there
# (append-only, like the other functions). It never touches the rate-limit
# table.

locals {
  manage_function_name  = "${var.name_prefix}-manage-keys"
  manage_log_group_name = "/aws/lambda/${local.manage_function_name}"
  manage_keys_zip       = startswith(var.manage_keys_zip, "/") ? var.manage_keys_zip : "${path.module}/${var.manage_keys_zip}"

  # Route key -> API Gateway source-ARN suffix of the Lambda permission.
  manage_routes = {
    "PUT /v1/devices/{device_id}/recovery-keys/{key_id}" = "PUT/v1/devices/*/recovery-keys/*"
    "PUT /v1/devices/{device_id}"                        = "PUT/v1/devices/*"
    "DELETE /v1/devices/{device_id}"                     = "DELETE/v1/devices/*"
    "POST /v1/devices/{device_id}/restore"               = "POST/v1/devices/*/restore"
    "GET /v1/rotation-requests"                          = "GET/v1/rotation-requests"
    "GET /v1/tenant/settings"                            = "GET/v1/tenant/settings"
    "PATCH /v1/tenant/settings"                          = "PATCH/v1/tenant/settings"
    "POST /v1/incidents"                                 = "POST/v1/incidents"
    "GET /v1/incidents"                                  = "GET/v1/incidents"
    "DELETE /v1/incidents/{incident_id}"                 = "DELETE/v1/incidents/*"
  }
}

variable "manage_keys_zip" {
  description = "Deployment package of manage-keys. Relative paths are relative to this module."
  type        = string
  default     = "../target/lambda/manage-keys/bootstrap.zip"
}

variable "manage_reserved_concurrency" {
  description = "Reserved concurrent executions of manage-keys. -1 (default) leaves the function unreserved (shares the account pool). A positive value guarantees and caps its concurrency, e.g. so a large MDM sync cannot starve key retrieval of KMS or DynamoDB capacity; 0 disables the function."
  type        = number
  default     = -1

  validation {
    condition     = var.manage_reserved_concurrency >= -1 && floor(var.manage_reserved_concurrency) == var.manage_reserved_concurrency
    error_message = "manage_reserved_concurrency must be -1 (unreserved) or a non-negative whole number."
  }
}

# ---------------------------------------------------------------------------
# Role
# ---------------------------------------------------------------------------

resource "aws_iam_role" "manage_keys" {
  name               = "${var.name_prefix}-manage-keys"
  description        = "Execution role of the ${local.manage_function_name} function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume_role.json
}

data "aws_iam_policy_document" "manage_keys" {
  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.manage_keys.arn}:*"]
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

resource "aws_iam_role_policy" "manage_keys" {
  name   = "manage-keys"
  role   = aws_iam_role.manage_keys.id
  policy = data.aws_iam_policy_document.manage_keys.json
}

resource "aws_iam_role_policy_attachment" "manage_keys_xray" {
  count      = var.enable_xray ? 1 : 0
  role       = aws_iam_role.manage_keys.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

# ---------------------------------------------------------------------------
# Function and its log group
# ---------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "manage_keys" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 90 days, set to 365+ where policy requires). These are operational logs; the record of every write is the audit table (point-in-time recovery, no TTL).
  name              = local.manage_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
}

resource "aws_lambda_function" "manage_keys" {
  #checkov:skip=CKV_AWS_116:Invoked synchronously by API Gateway only; a DLQ applies to asynchronous invocations and would never receive anything.
  #checkov:skip=CKV_AWS_117:The function reaches only public AWS endpoints (DynamoDB, KMS) and the identity provider's JWKS URL; there is no private resource to reach, and a VPC would add NAT/endpoint cost and cold-start latency without narrowing access (IAM does that).
  #checkov:skip=CKV_AWS_272:The zip is built from this repository and deployed by the same Terraform run (source_code_hash pins it); there is no separate publisher whose signature Lambda could verify.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (issuer, audience, table prefix, key ARN) and Lambda encrypts it at rest with an AWS managed key; a customer managed key would need a kms:Decrypt grant, which this role by design does not have.
  function_name = local.manage_function_name
  description   = "Recovery portal: escrow keys, enrol and retire devices, rotation requests, tenant settings (audited; seals, never decrypts)"
  role          = aws_iam_role.manage_keys.arn

  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [local.architecture]

  filename         = local.manage_keys_zip
  source_code_hash = filebase64sha256(local.manage_keys_zip)

  memory_size                    = var.lambda_memory_size
  timeout                        = var.lambda_timeout
  reserved_concurrent_executions = var.manage_reserved_concurrency

  environment {
    variables = local.function_environment
  }

  tracing_config {
    mode = local.tracing_mode
  }

  logging_config {
    log_format            = "JSON"
    application_log_level = var.application_log_level
    system_log_level      = var.system_log_level
    log_group             = aws_cloudwatch_log_group.manage_keys.name
  }

  depends_on = [aws_iam_role_policy.manage_keys]

  lifecycle {
    precondition {
      condition     = local.build != null
      error_message = "No build manifest at ${local.build_manifest}: build the functions with scripts/package.sh (it writes the zips and the manifest) before plan or apply."
    }
    precondition {
      condition     = local.build == null || try(local.build.zips["manage-keys"], null) == filebase64sha256(local.manage_keys_zip)
      error_message = "${local.manage_keys_zip} is not the zip scripts/package.sh recorded in ${local.build_manifest} (built another way, or changed since), so its architecture is unknown: run scripts/package.sh again."
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

# ---------------------------------------------------------------------------
# API: the write routes, behind the same JWT authorizer
# ---------------------------------------------------------------------------

resource "aws_apigatewayv2_integration" "manage_keys" {
  api_id                 = aws_apigatewayv2_api.portal.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.manage_keys.invoke_arn
  payload_format_version = "2.0"
}

resource "aws_apigatewayv2_route" "escrow_recovery_key" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "PUT /v1/devices/{device_id}/recovery-keys/{key_id}"
  target             = "integrations/${aws_apigatewayv2_integration.manage_keys.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_apigatewayv2_route" "upsert_device" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "PUT /v1/devices/{device_id}"
  target             = "integrations/${aws_apigatewayv2_integration.manage_keys.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_apigatewayv2_route" "retire_device" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "DELETE /v1/devices/{device_id}"
  target             = "integrations/${aws_apigatewayv2_integration.manage_keys.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_apigatewayv2_route" "restore_device" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "POST /v1/devices/{device_id}/restore"
  target             = "integrations/${aws_apigatewayv2_integration.manage_keys.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_apigatewayv2_route" "rotation_requests" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "GET /v1/rotation-requests"
  target             = "integrations/${aws_apigatewayv2_integration.manage_keys.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_apigatewayv2_route" "get_tenant_settings" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "GET /v1/tenant/settings"
  target             = "integrations/${aws_apigatewayv2_integration.manage_keys.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_apigatewayv2_route" "patch_tenant_settings" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "PATCH /v1/tenant/settings"
  target             = "integrations/${aws_apigatewayv2_integration.manage_keys.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_apigatewayv2_route" "open_incident" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "POST /v1/incidents"
  target             = "integrations/${aws_apigatewayv2_integration.manage_keys.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_apigatewayv2_route" "list_incidents" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "GET /v1/incidents"
  target             = "integrations/${aws_apigatewayv2_integration.manage_keys.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_apigatewayv2_route" "close_incident" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "DELETE /v1/incidents/{incident_id}"
  target             = "integrations/${aws_apigatewayv2_integration.manage_keys.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

# API Gateway may invoke the function for its routes, from this API only.
resource "aws_lambda_permission" "manage_keys_api" {
  for_each      = local.manage_routes
  statement_id  = "AllowInvokeFromHttpApi-${replace(replace(each.value, "/", "-"), "*", "x")}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.manage_keys.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.portal.execution_arn}/*/${each.value}"
}

output "manage_keys_function_name" {
  description = "Name of the manage-keys function."
  value       = aws_lambda_function.manage_keys.function_name
}
