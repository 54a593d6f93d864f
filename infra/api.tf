# HTTP API: the read and retrieval routes (the lifecycle's write routes are in
# manage.tf), all behind the JWT authorizer, each proxied (payload format 2.0)
# to its function.

resource "aws_apigatewayv2_api" "portal" {
  name          = "${var.name_prefix}-api"
  description   = "BitLocker recovery-key portal"
  protocol_type = "HTTP"

  # The portal page calls the API from its own origin (portal.tf): by default
  # the CloudFront distribution's (and portal_domain_name's) only. The methods
  # are those of the routes: the write routes (manage.tf) use PUT, PATCH and
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
# Integrations
# ---------------------------------------------------------------------------

resource "aws_apigatewayv2_integration" "list_devices" {
  api_id                 = aws_apigatewayv2_api.portal.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.list_devices.invoke_arn
  payload_format_version = "2.0"
}

# With provisioned concurrency (key_provisioned_concurrency > 0) the API calls
# the alias that holds it; an unqualified call would run on the unprovisioned
# $LATEST and get none of it.
resource "aws_apigatewayv2_integration" "get_recovery_key" {
  api_id                 = aws_apigatewayv2_api.portal.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = var.key_provisioned_concurrency > 0 ? aws_lambda_alias.get_recovery_key[0].invoke_arn : aws_lambda_function.get_recovery_key.invoke_arn
  payload_format_version = "2.0"
}

# ---------------------------------------------------------------------------
# Routes (no $default route: anything else is a 404 from API Gateway)
# ---------------------------------------------------------------------------

resource "aws_apigatewayv2_route" "list_devices" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "GET /v1/devices"
  target             = "integrations/${aws_apigatewayv2_integration.list_devices.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_apigatewayv2_route" "list_recovery_keys" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "GET /v1/recovery-keys"
  target             = "integrations/${aws_apigatewayv2_integration.list_devices.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_apigatewayv2_route" "list_audit_events" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "GET /v1/audit-events"
  target             = "integrations/${aws_apigatewayv2_integration.list_devices.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_apigatewayv2_route" "get_recovery_key" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "POST /v1/devices/{device_id}/recovery-key"
  target             = "integrations/${aws_apigatewayv2_integration.get_recovery_key.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

# Several keys in one request: it decrypts, so it is the retrieval function's
# (same role, same audit and rate limit). Each key is one KMS Decrypt, so one
# request may cost many: see route_throttles.
resource "aws_apigatewayv2_route" "batch_recovery_keys" {
  api_id             = aws_apigatewayv2_api.portal.id
  route_key          = "POST /v1/recovery-keys/batch"
  target             = "integrations/${aws_apigatewayv2_integration.get_recovery_key.id}"
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
  depends_on = [
    aws_apigatewayv2_route.list_devices,
    aws_apigatewayv2_route.list_recovery_keys,
    aws_apigatewayv2_route.list_audit_events,
    aws_apigatewayv2_route.get_recovery_key,
    aws_apigatewayv2_route.batch_recovery_keys,
    aws_apigatewayv2_route.escrow_recovery_key,
    aws_apigatewayv2_route.upsert_device,
    aws_apigatewayv2_route.retire_device,
    aws_apigatewayv2_route.restore_device,
    aws_apigatewayv2_route.rotation_requests,
    aws_apigatewayv2_route.get_tenant_settings,
    aws_apigatewayv2_route.patch_tenant_settings,
    aws_apigatewayv2_route.open_incident,
    aws_apigatewayv2_route.list_incidents,
    aws_apigatewayv2_route.close_incident,
  ]
}
