# The functions of local.functions (main.tf), one resource each through
# for_each: all three run the same configuration (a custom-runtime
# `bootstrap` binary built by cargo lambda) and read the same environment.

locals {
  # Optional settings are omitted rather than set to "" so the functions see
  # them as unset.
  function_environment = merge(
    {
      PORTAL_BACKEND        = "aws"
      PORTAL_ISSUER         = var.jwt_issuer
      PORTAL_AUDIENCE       = var.jwt_audience
      PORTAL_KEY_RATE_LIMIT = tostring(var.key_rate_limit)
      PORTAL_TABLE_PREFIX   = var.name_prefix
      # Only get-recovery-key decrypts; list-devices has no KMS permission and
      # merely shares the configuration.
      PORTAL_KMS_KEY_ID = aws_kms_key.recovery_keys.arn
      # CloudWatch namespace of the metrics the functions write into their
      # logs (embedded metric format: no PutMetricData, no extra permission).
      PORTAL_METRICS_NAMESPACE = var.metrics_namespace
    },
    var.jwks_json == "" ? {} : { PORTAL_JWKS = var.jwks_json },
    var.jwks_url == "" ? {} : { PORTAL_JWKS_URL = var.jwks_url },
    var.default_tenant == "" ? {} : { PORTAL_DEFAULT_TENANT = var.default_tenant },
    var.tenant_claim == "" ? {} : { PORTAL_TENANT_CLAIM = var.tenant_claim },
    var.user_claim == "" ? {} : { PORTAL_USER_CLAIM = var.user_claim },
    # The page asks for a sign-in this recent (config.json's max_age) and
    # get-recovery-key refuses a disclosure whose token's auth_time is older.
    var.portal_max_age == 0 ? {} : { PORTAL_WEB_MAX_AGE = tostring(var.portal_max_age) },
  )

  tracing_mode = var.enable_xray ? "Active" : "PassThrough"
}

resource "aws_lambda_function" "function" {
  #checkov:skip=CKV_AWS_116:Invoked synchronously by API Gateway only; a DLQ applies to asynchronous invocations and would never receive anything.
  #checkov:skip=CKV_AWS_117:The function reaches only public AWS endpoints (DynamoDB, KMS) and the identity provider's JWKS URL; there is no private resource to reach, and a VPC would add NAT/endpoint cost and cold-start latency without narrowing access (IAM does that).
  #checkov:skip=CKV_AWS_272:The zip is built from this repository and deployed by the same Terraform run (source_code_hash pins it); there is no separate publisher whose signature Lambda could verify.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (issuer, audience, table prefix, key ARN) and Lambda encrypts it at rest with an AWS managed key; a customer managed key would require a kms:Decrypt grant for the list-devices and manage-keys roles, which by design have none.
  for_each = local.functions

  function_name = "${var.name_prefix}-${each.key}"
  description   = each.value.description
  role          = aws_iam_role.function[each.key].arn

  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [local.architecture]

  filename         = local.function_zips[each.key]
  source_code_hash = filebase64sha256(local.function_zips[each.key])

  memory_size                    = var.lambda_memory_size
  timeout                        = var.lambda_timeout
  reserved_concurrent_executions = each.value.reserved_concurrency

  # Provisioned concurrency lives on a published version (through the alias
  # below), never on $LATEST; without it nothing is published.
  publish = each.value.provisioned_concurrency > 0

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
    log_group             = aws_cloudwatch_log_group.function[each.key].name
  }

  # The role's permissions must exist before the first invocation.
  depends_on = [aws_iam_role_policy.function]

  lifecycle {
    precondition {
      condition     = local.build != null
      error_message = "No build manifest at ${local.build_manifest}: build the functions with scripts/package.sh (it writes the zips and the manifest) before plan or apply."
    }
    precondition {
      condition     = local.build == null || try(local.build.zips[each.key], null) == filebase64sha256(local.function_zips[each.key])
      error_message = "${local.function_zips[each.key]} is not the zip scripts/package.sh recorded in ${local.build_manifest} (built another way, or changed since), so its architecture is unknown: run scripts/package.sh again."
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

# Provisioned concurrency of the retrieval function (key_provisioned_concurrency
# > 0): the alias "live" follows the version each apply publishes, and the API
# integration (api.tf) calls the alias, so requests land on the warm
# environments.
resource "aws_lambda_alias" "get_recovery_key" {
  count            = var.key_provisioned_concurrency > 0 ? 1 : 0
  name             = "live"
  description      = "The published version the API calls; holds the provisioned concurrency"
  function_name    = aws_lambda_function.function["get-recovery-key"].function_name
  function_version = aws_lambda_function.function["get-recovery-key"].version
}

resource "aws_lambda_provisioned_concurrency_config" "get_recovery_key" {
  count                             = var.key_provisioned_concurrency > 0 ? 1 : 0
  function_name                     = aws_lambda_function.function["get-recovery-key"].function_name
  qualifier                         = aws_lambda_alias.get_recovery_key[0].name
  provisioned_concurrent_executions = var.key_provisioned_concurrency

  lifecycle {
    # Lambda refuses more provisioned than reserved concurrency.
    precondition {
      condition     = var.key_reserved_concurrency == -1 || var.key_provisioned_concurrency <= var.key_reserved_concurrency
      error_message = "key_provisioned_concurrency (${var.key_provisioned_concurrency}) must not exceed key_reserved_concurrency (${var.key_reserved_concurrency})."
    }
  }
}

# API Gateway may invoke each function for its routes, from this API only.
# The source ARNs (api-id/stage/method/path) also pin each function to its
# own routes. The retrieval function's permissions name the alias when the
# API calls it (a permission on the unqualified function does not cover an
# alias).
resource "aws_lambda_permission" "api" {
  for_each      = local.api_permissions
  statement_id  = each.value.statement_id
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function[each.value.function].function_name
  qualifier     = local.functions[each.value.function].provisioned_concurrency > 0 ? aws_lambda_alias.get_recovery_key[0].name : null
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.portal.execution_arn}/*/${each.value.source}"
}
