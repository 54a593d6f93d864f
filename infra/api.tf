# HTTP API: every route of local.routes, all behind the JWT authorizer, each
# proxied (payload format 2.0) to its function.

locals {
  # Route key -> the function (a key of local.functions) that serves it: the
  # routes of api::ROUTES (src/api/mod.rs), exactly (tests/infra checks).
  # No $default route: anything else is a 404 from API Gateway. The batch
  # route (several keys in one request) is the retrieval function's: same
  # role, same audit and rate limit; each key is one KMS Decrypt, so one
  # request may cost many (see route_throttles).
  routes = {
    "GET /v1/devices"                                    = "list-devices"
    "GET /v1/recovery-keys"                              = "list-devices"
    "GET /v1/audit-events"                               = "list-devices"
    "POST /v1/devices/{device_id}/recovery-key"          = "get-recovery-key"
    "POST /v1/recovery-keys/batch"                       = "get-recovery-key"
    "PUT /v1/devices/{device_id}/recovery-keys/{key_id}" = "manage-keys"
    "PUT /v1/devices/{device_id}"                        = "manage-keys"
    "DELETE /v1/devices/{device_id}"                     = "manage-keys"
    "POST /v1/devices/{device_id}/restore"               = "manage-keys"
    "GET /v1/rotation-requests"                          = "manage-keys"
    "GET /v1/tenant/settings"                            = "manage-keys"
    "PATCH /v1/tenant/settings"                          = "manage-keys"
    "POST /v1/incidents"                                 = "manage-keys"
    "GET /v1/incidents"                                  = "manage-keys"
    "DELETE /v1/incidents/{incident_id}"                 = "manage-keys"
  }

  # Route key -> its source-ARN suffix in a Lambda permission: method and
  # path with each {parameter} a `*` ("PUT /v1/devices/{device_id}" ->
  # "PUT/v1/devices/*").
  route_sources = {
    for key, target in local.routes : key => join("/", [
      for segment in split("/", replace(key, " ", "")) : startswith(segment, "{") ? "*" : segment
    ])
  }

  # The Lambda permissions of lambda.tf: one per route, except that one
  # `GET /v1/*` permission covers list-devices' read routes. Statement IDs
  # are those first deployed (a changed ID would replace the permission).
  api_permissions = merge(
    {
      for key, target in local.routes : key => {
        function     = target
        source       = local.route_sources[key]
        statement_id = "AllowInvokeFromHttpApi-${replace(replace(local.route_sources[key], "/", "-"), "*", "x")}"
      } if target == "manage-keys"
    },
    {
      "GET /v1/*" = {
        function     = "list-devices"
        source       = "GET/v1/*"
        statement_id = "AllowInvokeFromHttpApi"
      }
      "POST /v1/devices/{device_id}/recovery-key" = {
        function     = "get-recovery-key"
        source       = local.route_sources["POST /v1/devices/{device_id}/recovery-key"]
        statement_id = "AllowInvokeFromHttpApi"
      }
      "POST /v1/recovery-keys/batch" = {
        function     = "get-recovery-key"
        source       = local.route_sources["POST /v1/recovery-keys/batch"]
        statement_id = "AllowInvokeFromHttpApiBatch"
      }
    },
  )
}

resource "aws_apigatewayv2_api" "portal" {
  name          = "${var.name_prefix}-api"
  description   = "BitLocker recovery-key portal"
  protocol_type = "HTTP"

  # The portal page calls the API from its own origin (portal.tf): by default
  # the CloudFront distribution's (and portal_domain_name's) only. The methods
  # are those of the routes: the write routes use PUT, PATCH and
  # DELETE, and a browser preflight for them must not fail.
  cors_configuration {
    allow_origins  = length(var.cors_allow_origins) > 0 ? var.cors_allow_origins : distinct(["https://${aws_cloudfront_distribution.portal.domain_name}", local.portal_origin])
    allow_methods  = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    allow_headers  = ["authorization", "content-type", "x-request-id"]
    expose_headers = ["retry-after", "x-request-id", "www-authenticate"]
    max_age        = 3600
  }
}

resource "aws_apigatewayv2_authorizer" "jwt" {
  api_id           = aws_apigatewayv2_api.portal.id
  name             = "jwt"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]

  jwt_configuration {
    issuer   = var.jwt_issuer
    audience = [var.jwt_audience]
  }
}

# ---------------------------------------------------------------------------
# Integrations and routes
# ---------------------------------------------------------------------------

# With provisioned concurrency (key_provisioned_concurrency > 0) the API calls
# the alias that holds it; an unqualified call would run on the unprovisioned
# $LATEST and get none of it.
resource "aws_apigatewayv2_integration" "function" {
  for_each               = local.functions
  api_id                 = aws_apigatewayv2_api.portal.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = each.value.provisioned_concurrency > 0 ? aws_lambda_alias.get_recovery_key[0].invoke_arn : aws_lambda_function.function[each.key].invoke_arn
  payload_format_version = "2.0"
}

resource "aws_apigatewayv2_route" "route" {
  for_each           = local.routes
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = each.key
  target             = "integrations/${aws_apigatewayv2_integration.function[each.value].id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

# ---------------------------------------------------------------------------
# Stage
# ---------------------------------------------------------------------------

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.portal.id
  name        = "$default"
  auto_deploy = true

  # Applies to every route. The defaults stay well below the account's KMS
  # request quota (see throttle_rate_limit in variables.tf): excess requests
  # get 429 here instead of KMS throttling inside the function.
  default_route_settings {
    throttling_rate_limit  = var.throttle_rate_limit
    throttling_burst_limit = var.throttle_burst_limit
  }

  # Per-route overrides (var.route_throttles, empty by default), e.g. a lower
  # limit for the batch route, whose requests cost one KMS Decrypt per key.
  dynamic "route_settings" {
    for_each = var.route_throttles
    content {
      route_key              = route_settings.key
      throttling_rate_limit  = route_settings.value.rate_limit
      throttling_burst_limit = route_settings.value.burst_limit
    }
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      requestTime        = "$context.requestTime"
      sourceIp           = "$context.identity.sourceIp"
      userAgent          = "$context.identity.userAgent"
      httpMethod         = "$context.httpMethod"
      routeKey           = "$context.routeKey"
      path               = "$context.path"
      protocol           = "$context.protocol"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      responseLatency    = "$context.responseLatency"
      subject            = "$context.authorizer.claims.sub"
      authorizerError    = "$context.authorizer.error"
      errorMessage       = "$context.error.message"
      integrationStatus  = "$context.integration.status"
      integrationLatency = "$context.integration.latency"
      integrationError   = "$context.integrationErrorMessage"
    })
  }

  # Route settings name routes by key: the routes must exist first.
  depends_on = [aws_apigatewayv2_route.route]
}
