# Metrics, alarms and the dashboard.
#
# The functions write their own metrics in CloudWatch embedded metric format
# (EMF) as part of their JSON log lines, and CloudWatch Logs extracts them:
# the roles need no cloudwatch:PutMetricData and no metric costs an API call
# on the request path. Namespace: var.metrics_namespace (passed as
# PORTAL_METRICS_NAMESPACE). Every metric is published without dimensions,
# and some also by one dimension:
#
#   KeysDisclosed       keys disclosed (Count)
#   Denials             denied requests (Count), also by Reason
#   RateLimited         requests refused by the per-caller rate limit (Count)
#   Unavailable         503 answers (Count), also by Cause: store, audit, kms, idp
#   AuditWriteFailures  audit events that could not be written (Count)
#   BatchSize           keys asked for, one value per batch request (Count)
#   IncidentsOpened     incidents opened (Count)
#   SettingsChanges     tenant settings changed (Count)
#   OwnerChanges        devices given to another owner (Count)
#   OwnerChangesRefused owner changes naming the caller, refused (Count)
#   DevicesRetired      devices retired (Count)
#   DevicesRestored     retired devices restored (Count)
#   AgentKeysInHour     per helpdesk disclosure: that agent's keys in the rolling hour
#
# Alarms notify local.alarm_actions: the topic created here
# (create_alarm_topic), else alarm_topic_arn, else no one.

locals {
  alarm_actions = compact([var.create_alarm_topic ? aws_sns_topic.alarms[0].arn : var.alarm_topic_arn])

  # Keyed list_devices, get_recovery_key, manage_keys (the alarms' keys
  # since before local.functions).
  monitored_functions = { for name, f in aws_lambda_function.function : replace(name, "-", "_") => f.function_name }

  monitored_tables = {
    devices     = aws_dynamodb_table.devices.name
    audit       = aws_dynamodb_table.audit.name
    rate_limits = aws_dynamodb_table.rate_limits.name
  }

  unavailable_causes = ["store", "audit", "kms", "idp"]

  api_dimensions = {
    ApiId = aws_apigatewayv2_api.portal.id
    Stage = aws_apigatewayv2_stage.default.name
  }
}

# ---------------------------------------------------------------------------
# Optional alarm topic
# ---------------------------------------------------------------------------
#
# Encrypted with a key of its own: CloudWatch can publish to an encrypted
# topic only if the key policy lets cloudwatch.amazonaws.com use the key,
# which the AWS managed SNS key does not (and the other keys here are kept to
# one purpose each).

resource "aws_kms_key" "alarms" {
  count                    = var.create_alarm_topic ? 1 : 0
  description              = "${var.name_prefix}: alarm topic encryption"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.kms_deletion_window_in_days
  policy                   = data.aws_iam_policy_document.alarms_key_policy.json
}

resource "aws_kms_alias" "alarms" {
  count         = var.create_alarm_topic ? 1 : 0
  name          = "alias/${var.name_prefix}-alarms"
  target_key_id = aws_kms_key.alarms[0].key_id
}

data "aws_iam_policy_document" "alarms_key_policy" {
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" means this key only; cryptographic use is limited to CloudWatch publishing alarm notifications.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" is the only valid value and means this key.
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

  # What CloudWatch needs to publish to an encrypted topic (SNS documentation,
  # "compatibility between event sources from AWS services and encrypted
  # topics"). Alarm messages carry metric values, no recovery key.
  statement {
    sid       = "CloudWatchAlarmsPublish"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
  }
}

resource "aws_sns_topic" "alarms" {
  count             = var.create_alarm_topic ? 1 : 0
  name              = "${var.name_prefix}-alarms"
  kms_master_key_id = aws_kms_key.alarms[0].arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count     = var.create_alarm_topic && var.alarm_email != "" ? 1 : 0
  topic_arn = aws_sns_topic.alarms[0].arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# ---------------------------------------------------------------------------
# Alarms
# ---------------------------------------------------------------------------

# Share of the API's answers that are 5xx (function errors, 503s from an
# unavailable dependency, integration failures). A rate rather than a count,
# so a busy hour does not alarm on a handful.
resource "aws_cloudwatch_metric_alarm" "api_5xx_rate" {
  alarm_name          = "${var.name_prefix}-api-5xx-rate"
  alarm_description   = "More than ${var.api_5xx_rate_threshold}% of the API's requests answered 5xx in 3 of the last 5 minutes."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.api_5xx_rate_threshold
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "rate"
    expression  = "IF(requests > 0, 100 * errors / requests, 0)"
    label       = "5xx (% of requests)"
    return_data = true
  }

  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/ApiGateway"
      metric_name = "5xx"
      dimensions  = local.api_dimensions
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApiGateway"
      metric_name = "Count"
      dimensions  = local.api_dimensions
      period      = 60
      stat        = "Sum"
    }
  }
}

# A function error is a crash or a timeout: the code answers every failure
# it knows of itself, so any is worth a look.
resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  for_each            = local.monitored_functions
  alarm_name          = "${each.value}-errors"
  alarm_description   = "The ${each.value} function failed (crash or timeout) in the last 5 minutes."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Throttled invocations reach the caller as 5xx: reserved concurrency too low,
# or the account's concurrency used up by other functions.
resource "aws_cloudwatch_metric_alarm" "lambda_throttles" {
  for_each            = local.monitored_functions
  alarm_name          = "${each.value}-throttles"
  alarm_description   = "Lambda throttled the ${each.value} function in the last 5 minutes (reserved or account concurrency exhausted)."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# KMS throttling reaches the code as an error of the Decrypt/Encrypt call,
# answered 503 and counted as Unavailable with Cause=kms. The KMS quota is
# shared by the account: this is the first limit an outage surge meets.
resource "aws_cloudwatch_metric_alarm" "kms_unavailable" {
  alarm_name          = "${var.name_prefix}-kms-unavailable"
  alarm_description   = "Requests answered 503 because KMS failed or throttled (the account's KMS request quota is shared) in the last 5 minutes."
  namespace           = var.metrics_namespace
  metric_name         = "Unavailable"
  dimensions          = { Cause = "kms" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# On-demand tables throttle when traffic more than doubles its previous peak
# at once, or a partition is hot; the requests then retry and end in 503s.
resource "aws_cloudwatch_metric_alarm" "dynamodb_throttles" {
  for_each            = local.monitored_tables
  alarm_name          = "${each.value}-throttles"
  alarm_description   = "DynamoDB throttled reads or writes of the ${each.value} table in the last 5 minutes."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "throttled"
    expression  = "FILL(reads, 0) + FILL(writes, 0)"
    label       = "Throttled read and write events"
    return_data = true
  }

  metric_query {
    id = "reads"
    metric {
      namespace   = "AWS/DynamoDB"
      metric_name = "ReadThrottleEvents"
      dimensions  = { TableName = each.value }
      period      = 300
      stat        = "Sum"
    }
  }

  metric_query {
    id = "writes"
    metric {
      namespace   = "AWS/DynamoDB"
      metric_name = "WriteThrottleEvents"
      dimensions  = { TableName = each.value }
      period      = 300
      stat        = "Sum"
    }
  }
}

# A disclosure is refused when its audit event cannot be written; any such
# failure means the trail or the table needs attention.
resource "aws_cloudwatch_metric_alarm" "audit_write_failures" {
  alarm_name          = "${var.name_prefix}-audit-write-failures"
  alarm_description   = "Audit events could not be written in the last minute."
  namespace           = var.metrics_namespace
  metric_name         = "AuditWriteFailures"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Someone declared an incident (POST /v1/incidents): tell the people who
# watch capacity, before the retrieval surge arrives.
resource "aws_cloudwatch_metric_alarm" "incident_opened" {
  alarm_name          = "${var.name_prefix}-incident-opened"
  alarm_description   = "An incident was opened in the recovery portal (POST /v1/incidents)."
  namespace           = var.metrics_namespace
  metric_name         = "IncidentsOpened"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Who may change what (issue 17): changes that could become a way to read
# keys are rare, so each one is worth a look.

# Any tenant settings change (self-service, limits, retention, helpdesk card).
resource "aws_cloudwatch_metric_alarm" "settings_changed" {
  alarm_name          = "${var.name_prefix}-settings-changed"
  alarm_description   = "Tenant settings changed (PATCH /v1/tenant/settings): self-service, rate limits, retention or the helpdesk card. Check the audit trail (settings_change)."
  namespace           = var.metrics_namespace
  metric_name         = "SettingsChanges"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# A device administrator tried to give themselves a device.
resource "aws_cloudwatch_metric_alarm" "owner_self_assignment" {
  alarm_name          = "${var.name_prefix}-owner-self-assignment"
  alarm_description   = "An owner change naming the caller was refused (audit reason self_assignment)."
  namespace           = var.metrics_namespace
  metric_name         = "OwnerChangesRefused"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "owner_changes" {
  alarm_name          = "${var.name_prefix}-owner-changes"
  alarm_description   = "More device owner changes in an hour than var.owner_changes_alarm_threshold."
  namespace           = var.metrics_namespace
  metric_name         = "OwnerChanges"
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.owner_changes_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "retirements" {
  alarm_name          = "${var.name_prefix}-retirements"
  alarm_description   = "More devices retired in an hour than var.retirements_alarm_threshold."
  namespace           = var.metrics_namespace
  metric_name         = "DevicesRetired"
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.retirements_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# One agent reading more keys in a rolling hour than the threshold: each
# helpdesk disclosure reports that agent's count, so the maximum is the
# busiest agent's, with no identifier in a dimension.
resource "aws_cloudwatch_metric_alarm" "agent_hourly_keys" {
  alarm_name          = "${var.name_prefix}-agent-hourly-keys"
  alarm_description   = "One helpdesk agent was disclosed more keys in an hour than var.agent_hourly_keys_alarm_threshold. Check the audit trail by actor."
  namespace           = var.metrics_namespace
  metric_name         = "AgentKeysInHour"
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.agent_hourly_keys_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# ---------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------

resource "aws_cloudwatch_dashboard" "portal" {
  dashboard_name = var.name_prefix
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 8, height = 6
        properties = {
          title   = "Keys disclosed"
          region  = local.region
          view    = "timeSeries"
          stat    = "Sum"
          period  = 60
          metrics = [[var.metrics_namespace, "KeysDisclosed"]]
        }
      },
      {
        type = "metric", x = 8, y = 0, width = 8, height = 6
        properties = {
          title  = "Denials by reason"
          region = local.region
          view   = "timeSeries"
          stat   = "Sum"
          period = 300
          metrics = [
            [{ id = "reasons", expression = "SEARCH('{\"${var.metrics_namespace}\",Reason} MetricName=\"Denials\"', 'Sum', 300)", label = "" }],
            [var.metrics_namespace, "Denials", { label = "all denials" }],
          ]
        }
      },
      {
        type = "metric", x = 16, y = 0, width = 8, height = 6
        properties = {
          title  = "429: rate limited"
          region = local.region
          view   = "timeSeries"
          stat   = "Sum"
          period = 60
          metrics = [
            [var.metrics_namespace, "RateLimited", { label = "per-caller key limit (function)" }],
            ["AWS/ApiGateway", "4xx", "ApiId", aws_apigatewayv2_api.portal.id, "Stage", aws_apigatewayv2_stage.default.name, { label = "API 4xx (includes stage throttling)" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 8, height = 6
        properties = {
          title  = "503: unavailable by cause"
          region = local.region
          view   = "timeSeries"
          stat   = "Sum"
          period = 60
          metrics = concat(
            [for cause in local.unavailable_causes : [var.metrics_namespace, "Unavailable", "Cause", cause, { label = cause }]],
            [[var.metrics_namespace, "Unavailable", { label = "all" }]],
          )
        }
      },
      {
        type = "metric", x = 8, y = 6, width = 8, height = 6
        properties = {
          title  = "Batch sizes (keys asked for), audit failures, incidents"
          region = local.region
          view   = "timeSeries"
          period = 300
          metrics = [
            [var.metrics_namespace, "BatchSize", { stat = "Average", label = "average" }],
            [var.metrics_namespace, "BatchSize", { stat = "Maximum", label = "largest" }],
            [var.metrics_namespace, "BatchSize", { stat = "SampleCount", label = "batch requests" }],
            [var.metrics_namespace, "AuditWriteFailures", { stat = "Sum", label = "audit write failures" }],
            [var.metrics_namespace, "IncidentsOpened", { stat = "Sum", label = "incidents opened" }],
            [var.metrics_namespace, "SettingsChanges", { stat = "Sum", label = "settings changes" }],
            [var.metrics_namespace, "OwnerChanges", { stat = "Sum", label = "owner changes" }],
            [var.metrics_namespace, "OwnerChangesRefused", { stat = "Sum", label = "self-assignments refused" }],
            [var.metrics_namespace, "DevicesRetired", { stat = "Sum", label = "devices retired" }],
            [var.metrics_namespace, "DevicesRestored", { stat = "Sum", label = "devices restored" }],
            [var.metrics_namespace, "AgentKeysInHour", { stat = "Maximum", label = "most keys one agent read in an hour" }],
          ]
        }
      },
      {
        # Usage of the account's KMS request quota, which every KMS user of
        # the account and region shares (see Capacity in infra/README.md).
        type = "metric", x = 16, y = 6, width = 8, height = 6
        properties = {
          title  = "KMS Decrypt calls per second (whole account) and quota"
          region = local.region
          view   = "timeSeries"
          period = 60
          metrics = [
            ["AWS/Usage", "CallCount", "Type", "API", "Resource", "Decrypt", "Service", "KMS", "Class", "None", { id = "decrypt", stat = "Sum", visible = false }],
            [{ id = "decrypt_rate", expression = "decrypt / PERIOD(decrypt)", label = "Decrypt/s" }],
            [{ id = "quota", expression = "SERVICE_QUOTA(decrypt)", label = "cryptographic operations quota (/s, shared)" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 8, height = 6
        properties = {
          title   = "Lambda concurrent executions"
          region  = local.region
          view    = "timeSeries"
          stat    = "Maximum"
          period  = 60
          metrics = [for name in values(local.monitored_functions) : ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", name]]
        }
      },
      {
        type = "metric", x = 8, y = 12, width = 8, height = 6
        properties = {
          title  = "Lambda throttles and errors"
          region = local.region
          view   = "timeSeries"
          stat   = "Sum"
          period = 60
          metrics = concat(
            [for name in values(local.monitored_functions) : ["AWS/Lambda", "Throttles", "FunctionName", name]],
            [for name in values(local.monitored_functions) : ["AWS/Lambda", "Errors", "FunctionName", name]],
          )
        }
      },
      {
        type = "metric", x = 16, y = 12, width = 8, height = 6
        properties = {
          title   = "Lambda duration (p99, ms)"
          region  = local.region
          view    = "timeSeries"
          stat    = "p99"
          period  = 60
          metrics = [for name in values(local.monitored_functions) : ["AWS/Lambda", "Duration", "FunctionName", name]]
        }
      },
      {
        type = "metric", x = 0, y = 18, width = 8, height = 6
        properties = {
          title  = "DynamoDB consumed capacity (units per minute)"
          region = local.region
          view   = "timeSeries"
          stat   = "Sum"
          period = 60
          metrics = concat(
            [for name in values(local.monitored_tables) : ["AWS/DynamoDB", "ConsumedReadCapacityUnits", "TableName", name]],
            [for name in values(local.monitored_tables) : ["AWS/DynamoDB", "ConsumedWriteCapacityUnits", "TableName", name]],
          )
        }
      },
      {
        type = "metric", x = 8, y = 18, width = 8, height = 6
        properties = {
          title  = "DynamoDB throttled events"
          region = local.region
          view   = "timeSeries"
          stat   = "Sum"
          period = 60
          metrics = concat(
            [for name in values(local.monitored_tables) : ["AWS/DynamoDB", "ReadThrottleEvents", "TableName", name]],
            [for name in values(local.monitored_tables) : ["AWS/DynamoDB", "WriteThrottleEvents", "TableName", name]],
          )
        }
      },
      {
        type = "metric", x = 16, y = 18, width = 8, height = 6
        properties = {
          title  = "API requests, 4xx, 5xx"
          region = local.region
          view   = "timeSeries"
          stat   = "Sum"
          period = 60
          metrics = [
            for m in ["Count", "4xx", "5xx"] : ["AWS/ApiGateway", m, "ApiId", aws_apigatewayv2_api.portal.id, "Stage", aws_apigatewayv2_stage.default.name]
          ]
        }
      },
      {
        type = "metric", x = 0, y = 24, width = 12, height = 6
        properties = {
          title  = "API latency (ms)"
          region = local.region
          view   = "timeSeries"
          period = 60
          metrics = [
            ["AWS/ApiGateway", "Latency", "ApiId", aws_apigatewayv2_api.portal.id, "Stage", aws_apigatewayv2_stage.default.name, { stat = "p50", label = "latency p50" }],
            ["AWS/ApiGateway", "Latency", "ApiId", aws_apigatewayv2_api.portal.id, "Stage", aws_apigatewayv2_stage.default.name, { stat = "p99", label = "latency p99" }],
            ["AWS/ApiGateway", "IntegrationLatency", "ApiId", aws_apigatewayv2_api.portal.id, "Stage", aws_apigatewayv2_stage.default.name, { stat = "p99", label = "integration latency p99" }],
          ]
        }
      },
      {
        type = "alarm", x = 12, y = 24, width = 12, height = 6
        properties = {
          title = "Alarms"
          alarms = concat(
            [
              aws_cloudwatch_metric_alarm.api_5xx_rate.arn,
              aws_cloudwatch_metric_alarm.kms_unavailable.arn,
              aws_cloudwatch_metric_alarm.audit_write_failures.arn,
              aws_cloudwatch_metric_alarm.incident_opened.arn,
            ],
            [for a in aws_cloudwatch_metric_alarm.lambda_errors : a.arn],
            [for a in aws_cloudwatch_metric_alarm.lambda_throttles : a.arn],
            [for a in aws_cloudwatch_metric_alarm.dynamodb_throttles : a.arn],
          )
        }
      },
      {
        # The scheduled Entra sync (entra_sync.tf; empty unless
        # var.entra_sync is set): a finished run writes both.
        type = "metric", x = 0, y = 30, width = 12, height = 6
        properties = {
          title  = "Entra sync: finished runs and keys copied (per hour)"
          region = local.region
          view   = "timeSeries"
          stat   = "Sum"
          period = 3600
          metrics = [
            [var.metrics_namespace, "EntraSyncSucceeded", { label = "finished runs" }],
            [var.metrics_namespace, "EntraSyncKeysCopied", { label = "keys copied" }],
          ]
        }
      },
    ]
  })

  # Checked here because the dashboard always exists (a precondition of the
  # topic would not run when it is not created).
  lifecycle {
    precondition {
      condition     = !(var.create_alarm_topic && var.alarm_topic_arn != "")
      error_message = "Set create_alarm_topic or alarm_topic_arn, not both."
    }
    precondition {
      condition     = var.alarm_email == "" || var.create_alarm_topic
      error_message = "alarm_email subscribes to the topic create_alarm_topic creates: set create_alarm_topic = true (or subscribe the address to alarm_topic_arn yourself)."
    }
  }
}
