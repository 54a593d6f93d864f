# ---------------------------------------------------------------------------
# Naming
# ---------------------------------------------------------------------------

variable "name_prefix" {
  description = "Prefix of every resource name. Also PORTAL_TABLE_PREFIX: the tables are <prefix>-devices, <prefix>-audit and <prefix>-rate_limits."
  type        = string
  default     = "recovery-portal"

  validation {
    # IAM role names are limited to 64 characters; the longest suffix used is
    # "-get-recovery-key" (17), so 40 leaves room to spare.
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,39}$", var.name_prefix))
    error_message = "name_prefix must be 1-40 characters of lowercase letters, digits and hyphens, starting with a letter or digit."
  }
}

variable "tags" {
  description = "Extra tags applied to every resource (provider default_tags)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------
# Identity provider (OIDC / JWT)
# ---------------------------------------------------------------------------

variable "jwt_issuer" {
  description = "OIDC issuer URL, exactly as in the tokens' iss claim (e.g. https://login.microsoftonline.com/<tenant-guid>/v2.0). Used by the API Gateway JWT authorizer and passed to the functions as PORTAL_ISSUER."
  type        = string

  validation {
    condition     = startswith(var.jwt_issuer, "https://")
    error_message = "jwt_issuer must be an https:// URL."
  }
}

variable "jwt_audience" {
  description = "Expected aud claim of the access tokens (application client id or api://... URI). Used by the JWT authorizer and passed as PORTAL_AUDIENCE."
  type        = string

  validation {
    condition     = length(var.jwt_audience) > 0
    error_message = "jwt_audience must not be empty."
  }
}

variable "jwks_json" {
  description = "Optional static JWKS document (JSON) passed as PORTAL_JWKS. Empty (default) omits the variable. Lambda limits all environment variables together to 4 KB, so prefer jwks_url for providers with many keys."
  type        = string
  default     = ""
}

variable "jwks_url" {
  description = "Optional JWKS URL passed as PORTAL_JWKS_URL. Empty (default) omits the variable and lets the functions discover the keys from the issuer."
  type        = string
  default     = ""

  validation {
    condition     = var.jwks_url == "" || startswith(var.jwks_url, "https://")
    error_message = "jwks_url must be empty or an https:// URL."
  }
}

variable "default_tenant" {
  description = "Optional PORTAL_DEFAULT_TENANT for tokens that carry no tenant claim. Empty (default) omits the variable."
  type        = string
  default     = ""

  validation {
    condition     = var.default_tenant == "" || can(regex("^[A-Za-z0-9._-]{1,128}$", var.default_tenant))
    error_message = "default_tenant must be empty or a tenant id of 1-128 characters from A-Z a-z 0-9 . _ -."
  }
}

variable "tenant_claim" {
  description = "Optional PORTAL_TENANT_CLAIM: the access-token claim naming the caller's tenant (default tid, Entra ID's), e.g. a custom claim of Okta, Auth0 (https://example.com/tenant) or Keycloak. Empty (default) omits the variable."
  type        = string
  default     = ""

  validation {
    condition     = var.tenant_claim == "" || can(regex("^[!-~]{1,256}$", var.tenant_claim))
    error_message = "tenant_claim must be empty or a claim name of 1-256 visible ASCII characters."
  }
}

variable "user_claim" {
  description = "Optional PORTAL_USER_CLAIM: the access-token claim naming the caller, matched against device owners (default oid, Entra ID's; sub when the token has no such claim). Empty (default) omits the variable."
  type        = string
  default     = ""

  validation {
    condition     = var.user_claim == "" || can(regex("^[!-~]{1,256}$", var.user_claim))
    error_message = "user_claim must be empty or a claim name of 1-256 visible ASCII characters."
  }
}

variable "key_rate_limit" {
  description = "PORTAL_KEY_RATE_LIMIT: recovery keys one caller may retrieve per rolling hour; further requests are refused until a slot frees up."
  type        = number
  default     = 10

  validation {
    condition     = var.key_rate_limit >= 1 && var.key_rate_limit <= 10000 && floor(var.key_rate_limit) == var.key_rate_limit
    error_message = "key_rate_limit must be a whole number from 1 to 10000."
  }
}

# ---------------------------------------------------------------------------
# Lambda
# ---------------------------------------------------------------------------

variable "architecture" {
  description = "Optional check: the instruction set (arm64 or x86_64) you mean to deploy. The functions always get the architecture scripts/package.sh built (build_manifest); null (default) accepts it, a different value fails the plan."
  type        = string
  default     = null

  validation {
    condition     = var.architecture == null || contains(["arm64", "x86_64"], coalesce(var.architecture, "-"))
    error_message = "architecture must be arm64 or x86_64 (or unset: the build's architecture is used)."
  }
}

variable "build_manifest" {
  description = "The manifest scripts/package.sh writes next to the zips: the architecture it built for and the SHA-256 of each zip. Relative paths are relative to this module."
  type        = string
  default     = "../target/lambda/build.json"
}

variable "lambda_memory_size" {
  description = "Memory of each function in MB (CPU is allocated in proportion)."
  type        = number
  default     = 256

  validation {
    condition     = var.lambda_memory_size >= 128 && var.lambda_memory_size <= 10240
    error_message = "lambda_memory_size must be between 128 and 10240 MB."
  }
}

variable "lambda_timeout" {
  description = "Timeout of each function in seconds. Keep it below API Gateway's 30 s integration timeout."
  type        = number
  default     = 10

  validation {
    condition     = var.lambda_timeout >= 1 && var.lambda_timeout <= 29
    error_message = "lambda_timeout must be between 1 and 29 seconds."
  }
}

variable "list_reserved_concurrency" {
  description = "Reserved concurrent executions of list-devices. -1 (default) leaves the function unreserved: it shares the account's unreserved pool (1,000 per region by default). A positive value both guarantees and caps its concurrency; 0 disables the function."
  type        = number
  default     = -1

  validation {
    condition     = var.list_reserved_concurrency >= -1 && floor(var.list_reserved_concurrency) == var.list_reserved_concurrency
    error_message = "list_reserved_concurrency must be -1 (unreserved) or a non-negative whole number."
  }
}

variable "key_reserved_concurrency" {
  description = "Reserved concurrent executions of get-recovery-key. -1 (default) leaves the function unreserved (shares the account pool). A positive value guarantees and caps its concurrency, e.g. so a listing storm cannot starve key retrieval; 0 disables the function."
  type        = number
  default     = -1

  validation {
    condition     = var.key_reserved_concurrency >= -1 && floor(var.key_reserved_concurrency) == var.key_reserved_concurrency
    error_message = "key_reserved_concurrency must be -1 (unreserved) or a non-negative whole number."
  }
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

variable "key_provisioned_concurrency" {
  description = "Provisioned concurrency of get-recovery-key: execution environments kept initialized, so a surge of retrievals meets no cold start (billed while provisioned). 0 (default): none, and no version is published. Above 0 the function is published on every apply and the API calls its alias \"live\", which holds the provisioned environments. At most key_reserved_concurrency when that is set."
  type        = number
  default     = 0

  validation {
    condition     = var.key_provisioned_concurrency >= 0 && var.key_provisioned_concurrency <= 10000 && floor(var.key_provisioned_concurrency) == var.key_provisioned_concurrency
    error_message = "key_provisioned_concurrency must be a whole number from 0 (none) to 10000."
  }
}

variable "list_devices_zip" {
  description = "Deployment package of list-devices (cargo lambda build --output-format zip). Relative paths are relative to this module."
  type        = string
  default     = "../target/lambda/list-devices/bootstrap.zip"
}

variable "get_recovery_key_zip" {
  description = "Deployment package of get-recovery-key. Relative paths are relative to this module."
  type        = string
  default     = "../target/lambda/get-recovery-key/bootstrap.zip"
}

variable "manage_keys_zip" {
  description = "Deployment package of manage-keys. Relative paths are relative to this module."
  type        = string
  default     = "../target/lambda/manage-keys/bootstrap.zip"
}

variable "enable_xray" {
  description = "Enable active X-Ray tracing of the functions (adds the AWSXRayDaemonWriteAccess policy to their roles). Off by default: tracing costs money per trace and is mostly useful while investigating latency."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------
# API Gateway
# ---------------------------------------------------------------------------

variable "throttle_rate_limit" {
  description = "Steady-state requests per second allowed by the $default stage (all routes). Every key retrieval costs one KMS Decrypt, and the default KMS cryptographic-request quota (10,000/s in most regions) is shared by the whole account; 2,000 keeps the portal at a fifth of it, so excess traffic gets 429 from API Gateway instead of KMS throttling other workloads or turning into 5xx. Raise it only together with the KMS quota."
  type        = number
  default     = 2000

  validation {
    condition     = var.throttle_rate_limit > 0
    error_message = "throttle_rate_limit must be positive."
  }
}

variable "throttle_burst_limit" {
  description = "Burst (token bucket size) of the $default stage throttle. Kept at half the rate limit for the same KMS reason as throttle_rate_limit."
  type        = number
  default     = 1000

  validation {
    condition     = var.throttle_burst_limit > 0 && floor(var.throttle_burst_limit) == var.throttle_burst_limit
    error_message = "throttle_burst_limit must be a positive integer."
  }
}

variable "route_throttles" {
  description = "Per-route throttles, overriding the stage's throttle_rate_limit/throttle_burst_limit for the routes named (by route key, e.g. \"POST /v1/recovery-keys/batch\"). Empty (default): every route uses the stage's limits. A batch request costs one KMS Decrypt per key, so its route is the one to limit."
  type = map(object({
    burst_limit = number
    rate_limit  = number
  }))
  default = {}

  # The routes of local.routes in api.tf (tests/infra/terraform.rs keeps this
  # list equal to them): a setting for an unknown route fails the apply.
  validation {
    condition = alltrue([for k in keys(var.route_throttles) : contains([
      "GET /v1/devices",
      "GET /v1/recovery-keys",
      "GET /v1/audit-events",
      "POST /v1/devices/{device_id}/recovery-key",
      "POST /v1/recovery-keys/batch",
      "PUT /v1/devices/{device_id}/recovery-keys/{key_id}",
      "PUT /v1/devices/{device_id}",
      "DELETE /v1/devices/{device_id}",
      "POST /v1/devices/{device_id}/restore",
      "GET /v1/rotation-requests",
      "GET /v1/tenant/settings",
      "PATCH /v1/tenant/settings",
      "POST /v1/incidents",
      "GET /v1/incidents",
      "DELETE /v1/incidents/{incident_id}",
    ], k)])
    error_message = "route_throttles keys must be route keys of this API, e.g. \"POST /v1/recovery-keys/batch\"."
  }

  validation {
    condition     = alltrue([for t in values(var.route_throttles) : t.rate_limit > 0 && t.burst_limit > 0 && floor(t.burst_limit) == t.burst_limit])
    error_message = "route_throttles: rate_limit must be positive and burst_limit a positive integer."
  }
}

variable "cors_allow_origins" {
  description = "Origins allowed to call the API from a browser (e.g. [\"https://portal.example.com\"]). Empty (default): the portal page's own origins, its CloudFront domain and portal_domain_name."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------------------
# Portal page (portal.tf)
# ---------------------------------------------------------------------------

variable "portal_client_id" {
  description = "The portal page's OIDC client id (a public SPA client with PKCE at the issuer), written to config.json. Empty (default): jwt_audience, for an Entra app registration that is both the API and the SPA."
  type        = string
  default     = ""
}

variable "portal_scopes" {
  description = "Scopes the page requests at sign-in, space-separated, written to config.json. For Entra ID use the API's full scope URI, e.g. \"openid api://<api-client-id>/RecoveryKey.Read\"."
  type        = string
  default     = "openid RecoveryKey.Read"

  validation {
    condition     = length(trimspace(var.portal_scopes)) > 0
    error_message = "portal_scopes must not be empty."
  }
}

variable "portal_auth_params" {
  description = "Extra parameters of the page's authorization request, form-encoded, written to config.json as auth_params (PORTAL_WEB_AUTH_PARAMS), e.g. \"resource=api://recovery-portal\" (RFC 8707; also sent in the token request) or \"audience=https://api.example\" (Auth0). The page's own parameters cannot be set here."
  type        = string
  default     = ""

  validation {
    condition = alltrue([
      for pair in compact(split("&", var.portal_auth_params)) :
      !contains(["response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method", "max_age"], split("=", pair)[0])
      && length(split("=", pair)[0]) > 0
    ])
    error_message = "portal_auth_params must be form-encoded name=value pairs and must not set the page's own parameters (response_type, client_id, redirect_uri, scope, state, nonce, code_challenge, code_challenge_method, max_age: use portal_client_id, portal_scopes and portal_max_age)."
  }
}

variable "portal_max_age" {
  description = "PORTAL_WEB_MAX_AGE in seconds (60-86400), or 0 (default) for none: the page asks the identity provider for a sign-in at most this old (max_age), and get-recovery-key refuses a disclosure whose token's auth_time is older."
  type        = number
  default     = 0

  validation {
    condition     = var.portal_max_age == 0 || (var.portal_max_age >= 60 && var.portal_max_age <= 86400 && floor(var.portal_max_age) == var.portal_max_age)
    error_message = "portal_max_age must be 0 or a whole number of seconds from 60 to 86400."
  }
}

variable "portal_api_url" {
  description = "API base URL written to config.json. Empty (default): this stack's API Gateway stage."
  type        = string
  default     = ""

  validation {
    condition     = var.portal_api_url == "" || startswith(var.portal_api_url, "https://")
    error_message = "portal_api_url must be empty or an https:// URL."
  }
}

variable "portal_connect_src" {
  description = "Extra origins the page may call (CSP connect-src), e.g. a Cognito hosted-UI domain whose token endpoint is not on the issuer's host. The issuer and this region's API Gateway are always allowed."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.portal_connect_src : can(regex("^https://[A-Za-z0-9.*-]+(:[0-9]+)?$", o))])
    error_message = "portal_connect_src entries must be https:// origins without a path."
  }
}

variable "portal_domain_name" {
  description = "Optional custom domain of the portal page (a CNAME to the distribution); needs portal_certificate_arn. Empty (default): the *.cloudfront.net name."
  type        = string
  default     = ""
}

variable "portal_certificate_arn" {
  description = "ACM certificate (in us-east-1) for portal_domain_name. Set both or neither."
  type        = string
  default     = ""

  validation {
    condition     = var.portal_certificate_arn == "" || startswith(var.portal_certificate_arn, "arn:")
    error_message = "portal_certificate_arn must be empty or an ACM certificate ARN."
  }
}

variable "portal_price_class" {
  description = "CloudFront price class of the portal page (PriceClass_100, PriceClass_200 or PriceClass_All)."
  type        = string
  default     = "PriceClass_100"

  validation {
    condition     = contains(["PriceClass_100", "PriceClass_200", "PriceClass_All"], var.portal_price_class)
    error_message = "portal_price_class must be PriceClass_100, PriceClass_200 or PriceClass_All."
  }
}

# ---------------------------------------------------------------------------
# Metrics, alarms, dashboard (monitoring.tf)
# ---------------------------------------------------------------------------

variable "metrics_namespace" {
  description = "CloudWatch namespace of the functions' own metrics (KeysDisclosed, Denials, RateLimited, Unavailable, AuditWriteFailures, BatchSize, IncidentsOpened, SettingsChanges, OwnerChanges, OwnerChangesRefused, DevicesRetired, DevicesRestored, AgentKeysInHour), passed as PORTAL_METRICS_NAMESPACE. Change it to keep two stacks in one account apart."
  type        = string
  default     = "RecoveryPortal"

  validation {
    # CloudWatch's rules; AWS/ is reserved for AWS services.
    condition     = can(regex("^[A-Za-z0-9._/#-][A-Za-z0-9._/#:-]{0,254}$", var.metrics_namespace)) && !startswith(var.metrics_namespace, "AWS/")
    error_message = "metrics_namespace must be 1-255 characters of A-Z a-z 0-9 . _ / # - : (not starting with : or AWS/)."
  }
}

variable "create_alarm_topic" {
  description = "Create an SNS topic (encrypted with a KMS key of its own) for the alarms' notifications. false (default): use alarm_topic_arn, or notify no one (the alarms still show on the dashboard and in the console)."
  type        = bool
  default     = false
}

variable "alarm_topic_arn" {
  description = "An existing SNS topic for the alarms' notifications (alarm and OK). Empty (default): none, unless create_alarm_topic. An encrypted topic's key must let cloudwatch.amazonaws.com use it."
  type        = string
  default     = ""

  validation {
    condition     = var.alarm_topic_arn == "" || can(regex("^arn:[a-z-]+:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]{1,256}$", var.alarm_topic_arn))
    error_message = "alarm_topic_arn must be empty or an SNS topic ARN."
  }
}

variable "alarm_email" {
  description = "E-mail address subscribed to the topic create_alarm_topic creates (the address must confirm the subscription). Empty (default): no subscription."
  type        = string
  default     = ""

  validation {
    condition     = var.alarm_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be empty or an e-mail address."
  }
}

variable "api_5xx_rate_threshold" {
  description = "Alarm when more than this percentage of the API's requests get a 5xx (per minute, in 3 of 5 minutes)."
  type        = number
  default     = 1

  validation {
    condition     = var.api_5xx_rate_threshold > 0 && var.api_5xx_rate_threshold <= 100
    error_message = "api_5xx_rate_threshold must be a percentage above 0 and at most 100."
  }
}

# ---------------------------------------------------------------------------
# Operators (iam.tf)
# ---------------------------------------------------------------------------

variable "keys_verify_principal_arns" {
  description = "IAM roles or users that run `portal keys verify` (it decrypts every stored key). They are named in the recovery-key CMK's key policy for Decrypt with the encryption context, and need the keys_verify_policy_arn policy attached as well. Empty (default): no one but the retrieval function can decrypt."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.keys_verify_principal_arns : can(regex("^arn:[a-z-]+:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+$", a))])
    error_message = "keys_verify_principal_arns must be IAM role or user ARNs (arn:aws:iam::<account>:role/<name>)."
  }
}

# ---------------------------------------------------------------------------
# Logs, data protection
# ---------------------------------------------------------------------------

variable "application_log_level" {
  description = "Lowest level of the functions' own log lines that reaches CloudWatch (Lambda JSON log format; the functions also read it as AWS_LAMBDA_LOG_LEVEL and skip what would be dropped). TRACE and DEBUG add detail about every request."
  type        = string
  default     = "INFO"

  validation {
    # FATAL is not offered: the functions log nothing at that level, so it
    # would silence their errors too.
    condition     = contains(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"], var.application_log_level)
    error_message = "application_log_level must be one of TRACE, DEBUG, INFO, WARN, ERROR."
  }
}

variable "system_log_level" {
  description = "Lowest level of Lambda's own log lines (START/END/REPORT are INFO) that reaches CloudWatch."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARN"], var.system_log_level)
    error_message = "system_log_level must be one of DEBUG, INFO, WARN."
  }
}

variable "log_retention_days" {
  description = "Retention of the function log groups and the API access log group, in days (0 = never expire)."
  type        = number
  default     = 90

  validation {
    condition     = contains([0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts (0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

variable "deletion_protection" {
  description = "DynamoDB deletion protection on all tables. Set to false and apply before terraform destroy."
  type        = bool
  default     = true
}

variable "kms_deletion_window_in_days" {
  description = "Waiting period before a scheduled KMS key deletion takes effect (7-30 days). Deleting the recovery-key CMK makes every stored recovery key unrecoverable."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_in_days >= 7 && var.kms_deletion_window_in_days <= 30
    error_message = "kms_deletion_window_in_days must be between 7 and 30."
  }
}

variable "owner_changes_alarm_threshold" {
  description = "Alarm when more device owner changes than this happen in one hour (OwnerChanges)."
  type        = number
  default     = 20

  validation {
    condition     = var.owner_changes_alarm_threshold >= 0
    error_message = "owner_changes_alarm_threshold must not be negative."
  }
}

variable "retirements_alarm_threshold" {
  description = "Alarm when more devices than this are retired in one hour (DevicesRetired)."
  type        = number
  default     = 20

  validation {
    condition     = var.retirements_alarm_threshold >= 0
    error_message = "retirements_alarm_threshold must not be negative."
  }
}

variable "agent_hourly_keys_alarm_threshold" {
  description = "Alarm when one helpdesk agent is disclosed more keys than this in a rolling hour (AgentKeysInHour). Below the default helpdesk limit (200), so a raised limit in use is seen."
  type        = number
  default     = 100

  validation {
    condition     = var.agent_hourly_keys_alarm_threshold >= 1
    error_message = "agent_hourly_keys_alarm_threshold must be at least 1."
  }
}

# ---------------------------------------------------------------------------
# Scheduled Entra sync (entra_sync.tf)
# ---------------------------------------------------------------------------

variable "entra_sync" {
  description = "The scheduled `portal sync entra` (a fourth function on an EventBridge schedule). null (default): not deployed. tenant_id is the portal's tenant the keys go into; entra_tenant_id and client_id identify the app registration (docs/getting-keys-in.md); its client secret goes into the secret this creates (output entra_sync_secret_arn), put out of band. schedule is an EventBridge Scheduler expression (UTC)."
  type = object({
    tenant_id       = string
    entra_tenant_id = string
    client_id       = string
    schedule        = optional(string, "rate(1 hour)")
    graph_url       = optional(string, "https://graph.microsoft.com")
    login_url       = optional(string, "https://login.microsoftonline.com")
    timeout         = optional(number, 900)
    memory_size     = optional(number, 256)
    zip             = optional(string, "../target/lambda/entra-sync/bootstrap.zip")
  })
  default  = null
  nullable = true

  validation {
    # The scheduled role's grants pin tenant_id into StringLike condition
    # values (iam.tf): a `*` or `?` would widen them. TenantId's rule
    # (src/domain/ids.rs).
    condition     = var.entra_sync == null ? true : can(regex("^[A-Za-z0-9._-]{1,128}$", var.entra_sync.tenant_id))
    error_message = "entra_sync.tenant_id must be 1 to 128 characters from A-Z a-z 0-9 . _ - (a portal tenant ID)."
  }

  validation {
    condition     = var.entra_sync == null ? true : can(regex("^(rate|cron)\\(.+\\)$", var.entra_sync.schedule))
    error_message = "entra_sync.schedule must be an EventBridge Scheduler rate(...) or cron(...) expression."
  }

  validation {
    condition     = var.entra_sync == null ? true : (var.entra_sync.timeout >= 60 && var.entra_sync.timeout <= 900)
    error_message = "entra_sync.timeout must be 60 to 900 seconds."
  }

  validation {
    # Terraform does not short-circuit ||: the conditional guards null.
    condition     = var.entra_sync == null ? true : (startswith(var.entra_sync.graph_url, "https://") && startswith(var.entra_sync.login_url, "https://"))
    error_message = "entra_sync.graph_url and login_url must be https URLs."
  }
}
