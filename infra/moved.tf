# Where each resource of a deployment made before local.functions and
# local.routes now lives: with these, `terraform plan` on an existing
# deployment moves the state and replaces nothing. Keep them (moved blocks
# cost nothing) until every deployment has applied once since.

# list-devices
moved {
  from = aws_lambda_function.list_devices
  to   = aws_lambda_function.function["list-devices"]
}
moved {
  from = aws_iam_role.list_devices
  to   = aws_iam_role.function["list-devices"]
}
moved {
  from = aws_iam_role_policy.list_devices
  to   = aws_iam_role_policy.function["list-devices"]
}
moved {
  from = aws_iam_role_policy_attachment.list_devices_xray[0]
  to   = aws_iam_role_policy_attachment.function_xray["list-devices"]
}
moved {
  from = aws_cloudwatch_log_group.list_devices
  to   = aws_cloudwatch_log_group.function["list-devices"]
}
moved {
  from = aws_apigatewayv2_integration.list_devices
  to   = aws_apigatewayv2_integration.function["list-devices"]
}

# get-recovery-key
moved {
  from = aws_lambda_function.get_recovery_key
  to   = aws_lambda_function.function["get-recovery-key"]
}
moved {
  from = aws_iam_role.get_recovery_key
  to   = aws_iam_role.function["get-recovery-key"]
}
moved {
  from = aws_iam_role_policy.get_recovery_key
  to   = aws_iam_role_policy.function["get-recovery-key"]
}
moved {
  from = aws_iam_role_policy_attachment.get_recovery_key_xray[0]
  to   = aws_iam_role_policy_attachment.function_xray["get-recovery-key"]
}
moved {
  from = aws_cloudwatch_log_group.get_recovery_key
  to   = aws_cloudwatch_log_group.function["get-recovery-key"]
}
moved {
  from = aws_apigatewayv2_integration.get_recovery_key
  to   = aws_apigatewayv2_integration.function["get-recovery-key"]
}

# manage-keys
moved {
  from = aws_lambda_function.manage_keys
  to   = aws_lambda_function.function["manage-keys"]
}
moved {
  from = aws_iam_role.manage_keys
  to   = aws_iam_role.function["manage-keys"]
}
moved {
  from = aws_iam_role_policy.manage_keys
  to   = aws_iam_role_policy.function["manage-keys"]
}
moved {
  from = aws_iam_role_policy_attachment.manage_keys_xray[0]
  to   = aws_iam_role_policy_attachment.function_xray["manage-keys"]
}
moved {
  from = aws_cloudwatch_log_group.manage_keys
  to   = aws_cloudwatch_log_group.function["manage-keys"]
}
moved {
  from = aws_apigatewayv2_integration.manage_keys
  to   = aws_apigatewayv2_integration.function["manage-keys"]
}

# Routes
moved {
  from = aws_apigatewayv2_route.list_devices
  to   = aws_apigatewayv2_route.route["GET /v1/devices"]
}
moved {
  from = aws_apigatewayv2_route.list_recovery_keys
  to   = aws_apigatewayv2_route.route["GET /v1/recovery-keys"]
}
moved {
  from = aws_apigatewayv2_route.list_audit_events
  to   = aws_apigatewayv2_route.route["GET /v1/audit-events"]
}
moved {
  from = aws_apigatewayv2_route.get_recovery_key
  to   = aws_apigatewayv2_route.route["POST /v1/devices/{device_id}/recovery-key"]
}
moved {
  from = aws_apigatewayv2_route.batch_recovery_keys
  to   = aws_apigatewayv2_route.route["POST /v1/recovery-keys/batch"]
}
moved {
  from = aws_apigatewayv2_route.escrow_recovery_key
  to   = aws_apigatewayv2_route.route["PUT /v1/devices/{device_id}/recovery-keys/{key_id}"]
}
moved {
  from = aws_apigatewayv2_route.upsert_device
  to   = aws_apigatewayv2_route.route["PUT /v1/devices/{device_id}"]
}
moved {
  from = aws_apigatewayv2_route.retire_device
  to   = aws_apigatewayv2_route.route["DELETE /v1/devices/{device_id}"]
}
moved {
  from = aws_apigatewayv2_route.restore_device
  to   = aws_apigatewayv2_route.route["POST /v1/devices/{device_id}/restore"]
}
moved {
  from = aws_apigatewayv2_route.rotation_requests
  to   = aws_apigatewayv2_route.route["GET /v1/rotation-requests"]
}
moved {
  from = aws_apigatewayv2_route.get_tenant_settings
  to   = aws_apigatewayv2_route.route["GET /v1/tenant/settings"]
}
moved {
  from = aws_apigatewayv2_route.patch_tenant_settings
  to   = aws_apigatewayv2_route.route["PATCH /v1/tenant/settings"]
}
moved {
  from = aws_apigatewayv2_route.open_incident
  to   = aws_apigatewayv2_route.route["POST /v1/incidents"]
}
moved {
  from = aws_apigatewayv2_route.list_incidents
  to   = aws_apigatewayv2_route.route["GET /v1/incidents"]
}
moved {
  from = aws_apigatewayv2_route.close_incident
  to   = aws_apigatewayv2_route.route["DELETE /v1/incidents/{incident_id}"]
}

# Lambda permissions
moved {
  from = aws_lambda_permission.list_devices_api
  to   = aws_lambda_permission.api["GET /v1/*"]
}
moved {
  from = aws_lambda_permission.get_recovery_key_api
  to   = aws_lambda_permission.api["POST /v1/devices/{device_id}/recovery-key"]
}
moved {
  from = aws_lambda_permission.batch_recovery_keys_api
  to   = aws_lambda_permission.api["POST /v1/recovery-keys/batch"]
}
moved {
  from = aws_lambda_permission.manage_keys_api["PUT /v1/devices/{device_id}/recovery-keys/{key_id}"]
  to   = aws_lambda_permission.api["PUT /v1/devices/{device_id}/recovery-keys/{key_id}"]
}
moved {
  from = aws_lambda_permission.manage_keys_api["PUT /v1/devices/{device_id}"]
  to   = aws_lambda_permission.api["PUT /v1/devices/{device_id}"]
}
moved {
  from = aws_lambda_permission.manage_keys_api["DELETE /v1/devices/{device_id}"]
  to   = aws_lambda_permission.api["DELETE /v1/devices/{device_id}"]
}
moved {
  from = aws_lambda_permission.manage_keys_api["POST /v1/devices/{device_id}/restore"]
  to   = aws_lambda_permission.api["POST /v1/devices/{device_id}/restore"]
}
moved {
  from = aws_lambda_permission.manage_keys_api["GET /v1/rotation-requests"]
  to   = aws_lambda_permission.api["GET /v1/rotation-requests"]
}
moved {
  from = aws_lambda_permission.manage_keys_api["GET /v1/tenant/settings"]
  to   = aws_lambda_permission.api["GET /v1/tenant/settings"]
}
moved {
  from = aws_lambda_permission.manage_keys_api["PATCH /v1/tenant/settings"]
  to   = aws_lambda_permission.api["PATCH /v1/tenant/settings"]
}
moved {
  from = aws_lambda_permission.manage_keys_api["POST /v1/incidents"]
  to   = aws_lambda_permission.api["POST /v1/incidents"]
}
moved {
  from = aws_lambda_permission.manage_keys_api["GET /v1/incidents"]
  to   = aws_lambda_permission.api["GET /v1/incidents"]
}
moved {
  from = aws_lambda_permission.manage_keys_api["DELETE /v1/incidents/{incident_id}"]
  to   = aws_lambda_permission.api["DELETE /v1/incidents/{incident_id}"]
}
