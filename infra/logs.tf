# CloudWatch log groups, created here (not by Lambda on first write) so that
# retention and encryption apply from the start.

resource "aws_cloudwatch_log_group" "function" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 90 days, set to 365+ where policy requires). These are operational logs; the record of every key disclosure and every write is the audit table (point-in-time recovery, no TTL).
  for_each          = local.functions
  name              = local.function_log_groups[each.key]
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
}

resource "aws_cloudwatch_log_group" "api_access" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 90 days, set to 365+ where policy requires). These are operational logs; the record of every key disclosure is the audit table (point-in-time recovery, no TTL).
  name              = local.access_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
}
