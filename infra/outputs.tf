output "api_url" {
  description = "Invoke URL of the $default stage (routes are under /v1/...)."
  value       = aws_apigatewayv2_stage.default.invoke_url
}

output "portal_url" {
  description = "The portal page: register it (with the trailing slash) as the SPA client's redirect URI at the issuer."
  value       = "${local.portal_origin}/"
}

output "portal_bucket" {
  description = "Bucket holding the portal page's files (written by Terraform)."
  value       = aws_s3_bucket.portal.id
}

output "portal_distribution_id" {
  description = "CloudFront distribution of the portal page (for cache invalidations)."
  value       = aws_cloudfront_distribution.portal.id
}

output "devices_table_name" {
  description = "Devices table (tenants, devices, sealed keys, key pointers)."
  value       = aws_dynamodb_table.devices.name
}

output "audit_table_name" {
  description = "Audit events table."
  value       = aws_dynamodb_table.audit.name
}

output "rate_limits_table_name" {
  description = "Rate-limit windows table."
  value       = aws_dynamodb_table.rate_limits.name
}

output "table_prefix" {
  description = "PORTAL_TABLE_PREFIX for the portal CLI (portal import)."
  value       = var.name_prefix
}

output "recovery_key_kms_key_arn" {
  description = "ARN of the recovery-key CMK: PORTAL_KMS_KEY_ID for portal import."
  value       = aws_kms_key.recovery_keys.arn
}

output "recovery_key_kms_alias" {
  description = "Alias of the recovery-key CMK."
  value       = aws_kms_alias.recovery_keys.name
}

output "entra_sync_policy_arn" {
  description = "Managed policy to attach to whoever runs portal sync entra (seals, never decrypts)."
  value       = aws_iam_policy.entra_sync.arn
}

output "import_policy_arn" {
  description = "Managed policy to attach to the administrators who run portal import."
  value       = aws_iam_policy.import.arn
}

output "list_devices_function_name" {
  description = "Name of the list-devices function."
  value       = aws_lambda_function.function["list-devices"].function_name
}

output "get_recovery_key_function_name" {
  description = "Name of the get-recovery-key function."
  value       = aws_lambda_function.function["get-recovery-key"].function_name
}

output "manage_keys_function_name" {
  description = "Name of the manage-keys function."
  value       = aws_lambda_function.function["manage-keys"].function_name
}

output "keys_verify_policy_arn" {
  description = "Managed policy to attach to the operator role that runs portal keys verify (name that role in keys_verify_principal_arns too)."
  value       = aws_iam_policy.keys_verify.arn
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify (created or given), or null when none is configured."
  value       = one(local.alarm_actions)
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard (metrics, capacity and alarms of this stack)."
  value       = aws_cloudwatch_dashboard.portal.dashboard_name
}

output "entra_sync_function_name" {
  description = "Name of the scheduled Entra sync function (null without var.entra_sync)."
  value       = one(aws_lambda_function.entra_sync[*].function_name)
}

output "entra_sync_secret_arn" {
  description = "Secrets Manager secret for the Entra app's client secret: put its value with `aws secretsmanager put-secret-value --secret-id <this> --secret-string file://secret.txt` (null without var.entra_sync)."
  value       = one(aws_secretsmanager_secret.entra_sync[*].arn)
}
