//! One structural edit (or a few) per property, each of which the named
//! check must notice: proof that every check can fail. The edits apply to
//! the configuration as written, before `locals` and `for_each` are
//! evaluated, so they also prove that the evaluation carries an edit of
//! `local.routes` or `local.functions` to the instances the checks read.

use super::edit::Edit::{self, *};
use super::*;

pub struct Mutation {
    pub what: &'static str,
    pub edits: &'static [Edit],
    pub check: fn(&Config) -> Vec<String>,
}

const fn m(
    what: &'static str,
    edits: &'static [Edit],
    check: fn(&Config) -> Vec<String>,
) -> Mutation {
    Mutation { what, edits, check }
}

const LIST_DOC: &str = "data.aws_iam_policy_document.list_devices";
const ROUTE: &str = "resource.aws_apigatewayv2_route.route";
const INTEGRATION: &str = "resource.aws_apigatewayv2_integration.function";
const FUNCTION: &str = "resource.aws_lambda_function.function";
const PERMISSION: &str = "resource.aws_lambda_permission.api";
const CORS: &str = "resource.aws_apigatewayv2_api.portal/cors_configuration";
const AUDIT: &str = "resource.aws_dynamodb_table.audit";
const STAGE: &str = "resource.aws_apigatewayv2_stage.default";
const DASHBOARD: &str = "resource.aws_cloudwatch_dashboard.portal";

pub const MUTATIONS: &[Mutation] = &[
    // (a) routes
    m(
        "key route proxied to list-devices",
        &[SetEntry(
            "locals",
            "routes",
            &["POST /v1/devices/{device_id}/recovery-key"],
            "\"list-devices\"",
        )],
        check_routes,
    ),
    m(
        "list route proxied to get-recovery-key",
        &[SetEntry(
            "locals",
            "routes",
            &["GET /v1/audit-events"],
            "\"get-recovery-key\"",
        )],
        check_routes,
    ),
    m(
        "route missing",
        &[DropEntry("locals", "routes", &["GET /v1/incidents"])],
        check_routes,
    ),
    m(
        "payload format 1.0",
        &[Set(INTEGRATION, "payload_format_version", "\"1.0\"")],
        check_routes,
    ),
    m(
        "route without authorization",
        &[Set(ROUTE, "authorization_type", "\"NONE\"")],
        check_routes,
    ),
    m(
        "route without authorizer",
        &[Remove(ROUTE, "authorizer_id")],
        check_routes,
    ),
    m(
        "authorizer audience not the variable",
        &[Set(
            "resource.aws_apigatewayv2_authorizer.jwt/jwt_configuration",
            "audience",
            "[\"any\"]",
        )],
        check_routes,
    ),
    m(
        "route renamed",
        &[RenameEntry(
            "locals",
            "routes",
            "GET /v1/audit-events",
            "GET /v1/audit",
        )],
        check_routes,
    ),
    m(
        "extra unauthenticated $default route",
        &[Add(
            "",
            "resource \"aws_apigatewayv2_route\" \"catch_all\" {\n  api_id    = aws_apigatewayv2_api.portal.id\n  route_key = \"$default\"\n  target    = \"integrations/${aws_apigatewayv2_integration.function[\"list-devices\"].id}\"\n}\n",
        )],
        check_routes,
    ),
    m(
        "lambda permission from any API",
        &[Set(PERMISSION, "source_arn", "\"arn:aws:execute-api:*\"")],
        check_routes,
    ),
    // functions
    m(
        "wrong zip",
        &[SetEntry(
            "locals",
            "functions",
            &["get-recovery-key", "zip"],
            "var.list_devices_zip",
        )],
        check_functions,
    ),
    m(
        "wrong runtime",
        &[Set(FUNCTION, "runtime", "\"provided.al2\"")],
        check_functions,
    ),
    m(
        "architecture as a second setting",
        &[Set(FUNCTION, "architectures", "[var.architecture]")],
        check_functions,
    ),
    m(
        "no check that the zip is the recorded one",
        &[Set(
            "resource.aws_lambda_function.function/lifecycle/precondition#1",
            "condition",
            "local.build == null || try(local.build.zips[each.key], null) == \"x\"",
        )],
        check_functions,
    ),
    m(
        "architecture variable not checked against the build",
        &[Set(
            "resource.aws_lambda_function.function/lifecycle/precondition#3",
            "condition",
            "true",
        )],
        check_functions,
    ),
    m(
        "text log format",
        &[Set(
            "resource.aws_lambda_function.function/logging_config",
            "log_format",
            "\"Text\"",
        )],
        check_logging,
    ),
    m(
        "application log level hard-coded",
        &[Set(
            "resource.aws_lambda_function.function/logging_config",
            "application_log_level",
            "\"DEBUG\"",
        )],
        check_logging,
    ),
    m(
        "a level the functions' filter does not know",
        &[Rewrite(
            "variable.application_log_level/validation",
            "condition",
            "[\"TRACE\", \"DEBUG\", \"INFO\", \"WARN\", \"ERROR\"]",
            "[\"TRACE\", \"DEBUG\", \"INFO\", \"WARN\", \"ERROR\", \"FATAL\"]",
        )],
        check_logging,
    ),
    m(
        "issuer variable misspelt",
        &[RenameEntry(
            "locals",
            "function_environment",
            "PORTAL_ISSUER",
            "PORTAL_ISSUER_URL",
        )],
        check_environment,
    ),
    m(
        "tables key as PORTAL_KMS_KEY_ID",
        &[SetEntry(
            "locals",
            "function_environment",
            &["PORTAL_KMS_KEY_ID"],
            "aws_kms_key.tables.arn",
        )],
        check_environment,
    ),
    m(
        "backend variable dropped",
        &[DropEntry(
            "locals",
            "function_environment",
            &["PORTAL_BACKEND"],
        )],
        check_environment,
    ),
    m(
        "one function without the environment",
        &[Set(
            "resource.aws_lambda_function.function/environment",
            "variables",
            "each.key == \"manage-keys\" ? {} : local.function_environment",
        )],
        check_environment,
    ),
    // (b) list role
    m(
        "list role gets kms:Decrypt",
        &[AddItem(
            "data.aws_iam_policy_document.list_devices/statement[sid=QueryAuditIndexes]",
            "actions",
            "\"kms:Decrypt\"",
        )],
        check_list_role_has_no_kms,
    ),
    m(
        "list role gets a wildcard action",
        &[Set(
            "data.aws_iam_policy_document.list_devices/statement[sid=QueryAuditIndexes]",
            "actions",
            "[\"*\"]",
        )],
        check_list_role_has_no_kms,
    ),
    m(
        "list role gets the import policy attached",
        &[Add(
            "",
            "resource \"aws_iam_role_policy_attachment\" \"oops\" {\n  role       = aws_iam_role.function[\"list-devices\"].name\n  policy_arn = aws_iam_policy.import.arn\n}\n",
        )],
        check_list_role_has_no_kms,
    ),
    m(
        "list role runs with the key function's policy",
        &[SetEntry(
            "locals",
            "function_policies",
            &["list-devices"],
            "data.aws_iam_policy_document.get_recovery_key.json",
        )],
        check_list_role_has_no_kms,
    ),
    // (c) key role
    m(
        "context keys incomplete",
        &[RemoveItem(
            "data.aws_iam_policy_document.get_recovery_key/statement[sid=DecryptRecoveryKeysWithContext]/condition[test=ForAllValues:StringEquals]",
            "values",
            "\"key_id\"",
        )],
        check_key_role_kms,
    ),
    m(
        "context keys with an extra key",
        &[AddItem(
            "data.aws_iam_policy_document.get_recovery_key/statement[sid=DecryptRecoveryKeysWithContext]/condition[test=ForAllValues:StringEquals]",
            "values",
            "\"other\"",
        )],
        check_key_role_kms,
    ),
    m(
        "ForAnyValue instead of ForAllValues",
        &[Set(
            "data.aws_iam_policy_document.get_recovery_key/statement[sid=DecryptRecoveryKeysWithContext]/condition[test=ForAllValues:StringEquals]",
            "test",
            "\"ForAnyValue:StringEquals\"",
        )],
        check_key_role_kms,
    ),
    m(
        "no Null condition",
        &[Set(
            "data.aws_iam_policy_document.get_recovery_key/statement[sid=DecryptRecoveryKeysWithContext]/condition[test=Null]",
            "variable",
            "\"kms:EncryptionContext:tenant_id\"",
        )],
        check_key_role_kms,
    ),
    m(
        "key role gets GenerateDataKey",
        &[AddItem(
            "data.aws_iam_policy_document.get_recovery_key/statement[sid=DecryptRecoveryKeysWithContext]",
            "actions",
            "\"kms:GenerateDataKey\"",
        )],
        check_key_role_kms,
    ),
    m(
        "key role decrypts with any key",
        &[Set(
            "data.aws_iam_policy_document.get_recovery_key/statement[sid=DecryptRecoveryKeysWithContext]",
            "resources",
            "[\"*\"]",
        )],
        check_key_role_kms,
    ),
    m(
        "key role gets kms:Encrypt",
        &[AddItem(
            "data.aws_iam_policy_document.get_recovery_key/statement[sid=DecryptRecoveryKeysWithContext]",
            "actions",
            "\"kms:Encrypt\"",
        )],
        check_key_role_kms,
    ),
    // key policies
    m(
        "recovery-key CMK lets the list role decrypt",
        &[Rewrite(
            "data.aws_iam_policy_document.recovery_keys_key_policy/statement[sid=KeyFunctionDecryptWithContext]/principals",
            "identifiers",
            "[aws_iam_role.function[\"get-recovery-key\"].arn]",
            "[aws_iam_role.function[\"get-recovery-key\"].arn, aws_iam_role.function[\"list-devices\"].arn]",
        )],
        check_key_policies,
    ),
    m(
        "recovery-key CMK lets the account decrypt",
        &[AddItem(
            "data.aws_iam_policy_document.recovery_keys_key_policy/statement[sid=DelegateEncryptWithContextToIam]",
            "actions",
            "\"kms:Decrypt\"",
        )],
        check_key_policies,
    ),
    m(
        "tables CMK usable outside DynamoDB",
        &[Set(
            "data.aws_iam_policy_document.tables_key_policy/statement[sid=UseThroughDynamoDbFromThisAccount]/condition[variable=kms:ViaService]",
            "variable",
            "\"kms:CallerArn\"",
        )],
        check_key_policies,
    ),
    m(
        "anyone in the key policy may decrypt",
        &[Rewrite(
            "data.aws_iam_policy_document.recovery_keys_key_policy/statement[sid=KeyFunctionDecryptWithContext]/principals",
            "identifiers",
            "var.keys_verify_principal_arns",
            "[\"*\"]",
        )],
        check_key_policies,
    ),
    // import policy
    m(
        "import policy can decrypt",
        &[AddItem(
            "data.aws_iam_policy_document.import/statement[sid=SealRecoveryKeysWithContext]",
            "actions",
            "\"kms:Decrypt\"",
        )],
        check_import_policy,
    ),
    m(
        "import policy cannot record ownership changes",
        &[Set(
            "data.aws_iam_policy_document.import/statement[sid=RecordOwnershipChanges]",
            "actions",
            "[\"dynamodb:GetItem\"]",
        )],
        check_import_policy,
    ),
    // tables
    m(
        "projected attribute dropped",
        &[RemoveItem(
            "resource.aws_dynamodb_table.devices/global_secondary_index[name=by_owner]",
            "non_key_attributes",
            "\"helpdesk\"",
        )],
        check_tables,
    ),
    m(
        "ciphertext projected",
        &[AddItem(
            "resource.aws_dynamodb_table.devices/global_secondary_index[name=by_owner]",
            "non_key_attributes",
            "\"sealed\"",
        )],
        check_tables,
    ),
    m(
        "projection type changed",
        &[Set(
            "resource.aws_dynamodb_table.audit/global_secondary_index[name=by_actor]",
            "projection_type",
            "\"KEYS_ONLY\"",
        )],
        check_tables,
    ),
    m(
        "index renamed",
        &[Set(
            "resource.aws_dynamodb_table.devices/global_secondary_index[name=by_key]",
            "name",
            "\"by_key_id\"",
        )],
        check_tables,
    ),
    m(
        "index range key changed",
        &[Set(
            "resource.aws_dynamodb_table.devices/global_secondary_index[name=by_owner]",
            "range_key",
            "\"display_name\"",
        )],
        check_tables,
    ),
    m(
        "table range key added",
        &[Set(AUDIT, "range_key", "\"sk\"")],
        check_tables,
    ),
    m(
        "attribute type N",
        &[Set(
            "resource.aws_dynamodb_table.devices/attribute[name=key_hex]",
            "type",
            "\"N\"",
        )],
        check_tables,
    ),
    m(
        "TTL attribute renamed",
        &[Set(
            "resource.aws_dynamodb_table.devices/ttl",
            "attribute_name",
            "\"ttl\"",
        )],
        check_tables,
    ),
    m(
        "table renamed",
        &[Set(
            "resource.aws_dynamodb_table.rate_limits",
            "name",
            "\"${var.name_prefix}-rate-limits\"",
        )],
        check_tables,
    ),
    m(
        "SSE with the recovery-key CMK",
        &[Set(
            "resource.aws_dynamodb_table.devices/server_side_encryption",
            "kms_key_arn",
            "aws_kms_key.recovery_keys.arn",
        )],
        check_tables,
    ),
    m(
        "rotation index dropped",
        &[Set(
            "resource.aws_dynamodb_table.devices/global_secondary_index[name=by_rotation]",
            "name",
            "\"by_rotation_2\"",
        )],
        check_tables,
    ),
    m(
        "superseded keys never expire",
        &[Drop("resource.aws_dynamodb_table.devices/ttl")],
        check_tables,
    ),
    // audit append-only
    m(
        "key role may update audit events",
        &[AddItem(
            "data.aws_iam_policy_document.get_recovery_key/statement[sid=AppendAuditEvents]",
            "actions",
            "\"dynamodb:UpdateItem\"",
        )],
        check_audit_append_only,
    ),
    m(
        "import policy may update and delete audit events (dynamodb:*)",
        &[Set(
            "data.aws_iam_policy_document.import/statement[sid=RecordOwnershipChanges]",
            "actions",
            "[\"dynamodb:*\"]",
        )],
        check_audit_append_only,
    ),
    m(
        "key role may update audit events (written-out ARN)",
        &[
            Set(
                "data.aws_iam_policy_document.get_recovery_key/statement[sid=AppendAuditEvents]",
                "actions",
                "[\"dynamodb:UpdateItem\"]",
            ),
            Set(
                "data.aws_iam_policy_document.get_recovery_key/statement[sid=AppendAuditEvents]",
                "resources",
                "[\"arn:aws:dynamodb:eu-west-1:123456789012:table/recovery-portal-audit\"]",
            ),
        ],
        check_audit_append_only,
    ),
    m(
        "import policy may delete audit events",
        &[AddItem(
            "data.aws_iam_policy_document.import/statement[sid=WriteDevices]",
            "resources",
            "\"${aws_dynamodb_table.audit.arn}*\"",
        )],
        check_audit_append_only,
    ),
    m(
        "manage role updates audit events (audit check)",
        &[AddItem(
            "data.aws_iam_policy_document.manage_keys/statement[sid=AppendAuditEvents]",
            "actions",
            "\"dynamodb:DeleteItem\"",
        )],
        check_audit_append_only,
    ),
    // list role and the audit table / devices
    m(
        "list role may append audit events",
        &[Add(
            LIST_DOC,
            "statement {\n  sid       = \"AppendAuditEvents\"\n  actions   = [\"dynamodb:PutItem\"]\n  resources = [aws_dynamodb_table.audit.arn]\n}\n",
        )],
        check_list_role_cannot_write_audit,
    ),
    m(
        "list role may write audit events (wildcard action and resource)",
        &[
            Set(
                "data.aws_iam_policy_document.list_devices/statement[sid=QueryAuditIndexes]",
                "actions",
                "[\"dynamodb:*\"]",
            ),
            Rewrite(
                "data.aws_iam_policy_document.list_devices/statement[sid=QueryAuditIndexes]",
                "resources",
                "\"${aws_dynamodb_table.audit.arn}/index/by_time\"",
                "\"${aws_dynamodb_table.audit.arn}*\"",
            ),
        ],
        check_list_role_cannot_write_audit,
    ),
    m(
        "list role queries the devices table",
        &[Rewrite(
            "data.aws_iam_policy_document.list_devices/statement[sid=QueryDeviceIndexes]",
            "resources",
            "\"${aws_dynamodb_table.devices.arn}/index/by_owner\"",
            "aws_dynamodb_table.devices.arn",
        )],
        check_list_role_devices_access,
    ),
    m(
        "list role reads device items",
        &[Set(
            "data.aws_iam_policy_document.list_devices/statement[sid=GetTenantItemsOnly]/condition[test=ForAllValues:StringLike]",
            "values",
            "[\"*\"]",
        )],
        check_list_role_devices_access,
    ),
    m(
        "list role tenant statement also queries",
        &[AddItem(
            "data.aws_iam_policy_document.list_devices/statement[sid=GetTenantItemsOnly]",
            "actions",
            "\"dynamodb:Query\"",
        )],
        check_list_role_devices_access,
    ),
    m(
        "list role GetItem unconditioned",
        &[Set(
            "data.aws_iam_policy_document.list_devices/statement[sid=GetTenantItemsOnly]/condition[test=ForAllValues:StringLike]",
            "test",
            "\"StringLike\"",
        )],
        check_list_role_devices_access,
    ),
    // manage role
    m(
        "manage role gets kms:Decrypt",
        &[AddItem(
            "data.aws_iam_policy_document.manage_keys/statement[sid=SealRecoveryKeysWithContext]",
            "actions",
            "\"kms:Decrypt\"",
        )],
        check_manage_role,
    ),
    m(
        "manage role encrypts without the context condition",
        &[Set(
            "data.aws_iam_policy_document.manage_keys/statement[sid=SealRecoveryKeysWithContext]/condition[test=Null]",
            "variable",
            "\"kms:EncryptionContext:tenant_id\"",
        )],
        check_manage_role,
    ),
    m(
        "manage role encrypts with any key",
        &[Set(
            "data.aws_iam_policy_document.manage_keys/statement[sid=SealRecoveryKeysWithContext]",
            "resources",
            "[\"*\"]",
        )],
        check_manage_role,
    ),
    m(
        "manage role writes the rate-limit table",
        &[AddItem(
            "data.aws_iam_policy_document.manage_keys/statement[sid=ReadAndWriteDevices]",
            "resources",
            "aws_dynamodb_table.rate_limits.arn",
        )],
        check_manage_role,
    ),
    m(
        "manage role updates any rate-limit item",
        &[Set(
            "data.aws_iam_policy_document.manage_keys/statement[sid=CountDeniedWrites]/condition[test=ForAllValues:StringLike]",
            "values",
            "[\"*\"]",
        )],
        check_manage_role,
    ),
    m(
        "manage role counts denials without the key condition's Null guard",
        &[Drop(
            "data.aws_iam_policy_document.manage_keys/statement[sid=CountDeniedWrites]/condition[test=Null]",
        )],
        check_manage_role,
    ),
    m(
        "manage role reads the rate-limit table",
        &[AddItem(
            "data.aws_iam_policy_document.manage_keys/statement[sid=CountDeniedWrites]",
            "actions",
            "\"dynamodb:GetItem\"",
        )],
        check_manage_role,
    ),
    m(
        "manage role updates audit events",
        &[AddItem(
            "data.aws_iam_policy_document.manage_keys/statement[sid=AppendAuditEvents]",
            "actions",
            "\"dynamodb:UpdateItem\"",
        )],
        check_manage_role,
    ),
    m(
        "manage role gets another service",
        &[AddItem(
            "data.aws_iam_policy_document.manage_keys/statement[sid=QueryRotationRequests]",
            "actions",
            "\"s3:GetObject\"",
        )],
        check_manage_role,
    ),
    m(
        "manage role gains ConditionCheckItem, which no call uses",
        &[AddItem(
            "data.aws_iam_policy_document.manage_keys/statement[sid=ReadAndWriteDevices]",
            "actions",
            "\"dynamodb:ConditionCheckItem\"",
        )],
        check_manage_role,
    ),
    m(
        "manage role may Scan devices",
        &[AddItem(
            "data.aws_iam_policy_document.manage_keys/statement[sid=ReadAndWriteDevices]",
            "actions",
            "\"dynamodb:Scan\"",
        )],
        check_manage_role,
    ),
    m(
        "manage role runs with the list role's policy",
        &[SetEntry(
            "locals",
            "function_policies",
            &["manage-keys"],
            "data.aws_iam_policy_document.list_devices.json",
        )],
        check_manage_role,
    ),
    // manage routes, through the evaluated for_each
    m(
        "manage routes without the authorizer",
        &[Set(
            ROUTE,
            "authorizer_id",
            "each.value == \"manage-keys\" ? null : aws_apigatewayv2_authorizer.jwt.id",
        )],
        check_routes,
    ),
    m(
        "manage integration invokes get-recovery-key",
        &[Set(
            INTEGRATION,
            "integration_uri",
            "each.key == \"manage-keys\" ? aws_lambda_function.function[\"get-recovery-key\"].invoke_arn : aws_lambda_function.function[each.key].invoke_arn",
        )],
        check_routes,
    ),
    m(
        "manage function runs the list zip",
        &[SetEntry(
            "locals",
            "functions",
            &["manage-keys", "zip"],
            "var.list_devices_zip",
        )],
        check_functions,
    ),
    m(
        "batch route to manage-keys",
        &[SetEntry(
            "locals",
            "routes",
            &["POST /v1/recovery-keys/batch"],
            "\"manage-keys\"",
        )],
        check_routes,
    ),
    m(
        "incident route renamed",
        &[RenameEntry(
            "locals",
            "routes",
            "DELETE /v1/incidents/{incident_id}",
            "DELETE /v1/incidents",
        )],
        check_routes,
    ),
    m(
        "batch route without invoke permission",
        &[SetEntry(
            "locals",
            "api_permissions",
            &["POST /v1/recovery-keys/batch", "source"],
            "\"POST/v1/devices/*/recovery-key\"",
        )],
        check_routes,
    ),
    m(
        "incident route without invoke permission",
        &[Rewrite(
            "locals",
            "api_permissions",
            "target == \"manage-keys\"",
            "target == \"manage-keys\" && key != \"POST /v1/incidents\"",
        )],
        check_routes,
    ),
    // stage
    m(
        "throttle above the KMS quota",
        &[Set("variable.throttle_rate_limit", "default", "20000")],
        check_stage,
    ),
    // portal page
    m(
        "portal bucket allows public policies",
        &[Set(
            "resource.aws_s3_bucket_public_access_block.portal",
            "block_public_policy",
            "false",
        )],
        check_portal_bucket,
    ),
    m(
        "portal bucket readable by anyone",
        &[Set(
            "data.aws_iam_policy_document.portal_bucket/statement#0/principals",
            "identifiers",
            "[\"*\"]",
        )],
        check_portal_bucket,
    ),
    m(
        "portal bucket readable by any distribution",
        &[Set(
            "data.aws_iam_policy_document.portal_bucket/statement#0/condition",
            "variable",
            "\"AWS:SourceAccount\"",
        )],
        check_portal_bucket,
    ),
    m(
        "portal bucket lets CloudFront list and write",
        &[AddItem(
            "data.aws_iam_policy_document.portal_bucket/statement#0",
            "actions",
            "\"s3:PutObject\"",
        )],
        check_portal_bucket,
    ),
    m(
        "CSP allows inline scripts",
        &[Rewrite(
            "locals",
            "portal_csp",
            "\"script-src 'self'\"",
            "\"script-src 'self' 'unsafe-inline'\"",
        )],
        check_portal_distribution,
    ),
    m(
        "CSP allows framing",
        &[RemoveItem(
            "locals",
            "portal_csp",
            "\"frame-ancestors 'none'\"",
        )],
        check_portal_distribution,
    ),
    m(
        "viewers allowed over HTTP",
        &[Set(
            "resource.aws_cloudfront_distribution.portal/default_cache_behavior",
            "viewer_protocol_policy",
            "\"allow-all\"",
        )],
        check_portal_distribution,
    ),
    m(
        "referrer sent",
        &[Set(
            "resource.aws_cloudfront_response_headers_policy.portal/security_headers_config/referrer_policy",
            "referrer_policy",
            "\"origin\"",
        )],
        check_portal_distribution,
    ),
    m(
        "frames from the same origin",
        &[Set(
            "resource.aws_cloudfront_response_headers_policy.portal/security_headers_config/frame_options",
            "frame_option",
            "\"SAMEORIGIN\"",
        )],
        check_portal_distribution,
    ),
    m(
        "origin without access control",
        &[Remove(
            "resource.aws_cloudfront_distribution.portal/origin",
            "origin_access_control_id",
        )],
        check_portal_distribution,
    ),
    m(
        "config.json without client_id",
        &[DropEntry("locals", "portal_config", &["client_id"])],
        check_portal_content,
    ),
    m(
        "config.json without auth_params",
        &[DropEntry("locals", "portal_config", &["auth_params"])],
        check_portal_content,
    ),
    m(
        "a web file type missing",
        &[DropEntry("locals", "portal_content_types", &["svg"])],
        check_portal_content,
    ),
    // CORS
    m(
        "CORS without x-request-id",
        &[RemoveItem(CORS, "allow_headers", "\"x-request-id\"")],
        check_api_cors,
    ),
    m(
        "CORS hides Retry-After",
        &[RemoveItem(CORS, "expose_headers", "\"retry-after\"")],
        check_api_cors,
    ),
    m(
        "CORS without DELETE",
        &[RemoveItem(CORS, "allow_methods", "\"DELETE\"")],
        check_api_cors,
    ),
    m(
        "metrics namespace not passed",
        &[DropEntry(
            "locals",
            "function_environment",
            &["PORTAL_METRICS_NAMESPACE"],
        )],
        check_environment,
    ),
    // keys verify
    m(
        "verify decrypts without the context",
        &[Set(
            "data.aws_iam_policy_document.keys_verify/statement[sid=DecryptRecoveryKeysWithContext]/condition[test=Null]",
            "values",
            "[\"true\"]",
        )],
        check_keys_verify,
    ),
    m(
        "verify scans the audit table",
        &[AddItem(
            "data.aws_iam_policy_document.keys_verify/statement[sid=ReadDevices]",
            "resources",
            "aws_dynamodb_table.audit.arn",
        )],
        check_keys_verify,
    ),
    m(
        "verify may update audit events",
        &[AddItem(
            "data.aws_iam_policy_document.keys_verify/statement[sid=RecordVerification]",
            "actions",
            "\"dynamodb:UpdateItem\"",
        )],
        check_keys_verify,
    ),
    m(
        "import policy gains Decrypt",
        &[AddItem(
            "data.aws_iam_policy_document.import/statement[sid=SealRecoveryKeysWithContext]",
            "actions",
            "\"kms:Decrypt\"",
        )],
        check_keys_verify,
    ),
    m(
        "list role gains Scan",
        &[AddItem(
            "data.aws_iam_policy_document.list_devices/statement[sid=QueryDeviceIndexes]",
            "actions",
            "\"dynamodb:Scan\"",
        )],
        check_keys_verify,
    ),
    m(
        "keys_verify attached to a function role",
        &[Add(
            "",
            "resource \"aws_iam_role_policy_attachment\" \"verify\" {\n  role       = aws_iam_role.function[\"manage-keys\"].name\n  policy_arn = aws_iam_policy.keys_verify.arn\n}\n",
        )],
        check_keys_verify,
    ),
    // alarms
    m(
        "no alarms for manage-keys",
        &[Rewrite(
            "locals",
            "monitored_functions",
            "aws_lambda_function.function",
            "{ for k, f in aws_lambda_function.function : k => f if k != \"manage-keys\" }",
        )],
        check_alarms,
    ),
    m(
        "no throttle alarm for the rate-limit table",
        &[DropEntry("locals", "monitored_tables", &["rate_limits"])],
        check_alarms,
    ),
    m(
        "alarm without OK notification",
        &[Set(
            "resource.aws_cloudwatch_metric_alarm.lambda_throttles",
            "ok_actions",
            "[]",
        )],
        check_alarms,
    ),
    m(
        "alarm on a metric the code does not write",
        &[Set(
            "resource.aws_cloudwatch_metric_alarm.audit_write_failures",
            "metric_name",
            "\"AuditFailures\"",
        )],
        check_alarms,
    ),
    m(
        "KMS alarm on another cause",
        &[Set(
            "resource.aws_cloudwatch_metric_alarm.kms_unavailable",
            "dimensions",
            "{ Cause = \"store\" }",
        )],
        check_alarms,
    ),
    m(
        "custom metric in a literal namespace",
        &[Set(
            "resource.aws_cloudwatch_metric_alarm.audit_write_failures",
            "namespace",
            "\"RecoveryPortal\"",
        )],
        check_alarms,
    ),
    m(
        "incident alarm breaching on no data",
        &[Set(
            "resource.aws_cloudwatch_metric_alarm.incident_opened",
            "treat_missing_data",
            "\"breaching\"",
        )],
        check_alarms,
    ),
    m(
        "5xx alarm on 4xx",
        &[Set(
            "resource.aws_cloudwatch_metric_alarm.api_5xx_rate/metric_query#1/metric",
            "metric_name",
            "\"4xx\"",
        )],
        check_alarms,
    ),
    m(
        "DynamoDB alarm ignores writes",
        &[Set(
            "resource.aws_cloudwatch_metric_alarm.dynamodb_throttles/metric_query#0",
            "expression",
            "\"FILL(reads, 0)\"",
        )],
        check_alarms,
    ),
    m(
        "namespace default changed",
        &[Set("variable.metrics_namespace", "default", "\"Portal\"")],
        check_alarms,
    ),
    // dashboard and alarm topic
    m(
        "dashboard without keys disclosed",
        &[Rewrite(
            DASHBOARD,
            "dashboard_body",
            "[[var.metrics_namespace, \"KeysDisclosed\"]]",
            "[]",
        )],
        check_dashboard,
    ),
    m(
        "dashboard without KMS usage",
        &[Rewrite(
            DASHBOARD,
            "dashboard_body",
            "\"AWS/Usage\"",
            "\"AWS/KMS\"",
        )],
        check_dashboard,
    ),
    m(
        "a cause missing",
        &[RemoveItem("locals", "unavailable_causes", "\"idp\"")],
        check_dashboard,
    ),
    m(
        "alarm topic unencrypted",
        &[Remove("resource.aws_sns_topic.alarms", "kms_master_key_id")],
        check_alarm_topic,
    ),
    m(
        "alarm topic with the AWS managed key",
        &[Set(
            "resource.aws_sns_topic.alarms",
            "kms_master_key_id",
            "\"alias/aws/sns\"",
        )],
        check_alarm_topic,
    ),
    m(
        "alarm key without CloudWatch",
        &[Set(
            "data.aws_iam_policy_document.alarms_key_policy/statement[sid=CloudWatchAlarmsPublish]/principals",
            "identifiers",
            "[\"sns.amazonaws.com\"]",
        )],
        check_alarm_topic,
    ),
    m(
        "alarm key not rotated",
        &[Set(
            "resource.aws_kms_key.alarms",
            "enable_key_rotation",
            "false",
        )],
        check_alarm_topic,
    ),
    // concurrency
    m(
        "integration bypasses the alias",
        &[Rewrite(
            INTEGRATION,
            "integration_uri",
            "aws_lambda_alias.get_recovery_key[0].invoke_arn",
            "aws_lambda_function.function[each.key].invoke_arn",
        )],
        check_concurrency,
    ),
    m(
        "batch permission without the alias",
        &[Set(
            PERMISSION,
            "qualifier",
            "each.key == \"POST /v1/recovery-keys/batch\" ? null : local.functions[each.value.function].provisioned_concurrency > 0 ? aws_lambda_alias.get_recovery_key[0].name : null",
        )],
        check_concurrency,
    ),
    m(
        "nothing published",
        &[Set(FUNCTION, "publish", "false")],
        check_concurrency,
    ),
    m(
        "provisioned concurrency on $LATEST",
        &[Set(
            "resource.aws_lambda_provisioned_concurrency_config.get_recovery_key",
            "qualifier",
            "\"$LATEST\"",
        )],
        check_concurrency,
    ),
    m(
        "reserved concurrency fixed",
        &[SetEntry(
            "locals",
            "functions",
            &["manage-keys", "reserved_concurrency"],
            "100",
        )],
        check_concurrency,
    ),
    // route throttles
    m(
        "route settings not from the variable",
        &[Set(
            "resource.aws_apigatewayv2_stage.default/dynamic.route_settings",
            "for_each",
            "{}",
        )],
        check_route_throttles,
    ),
    m(
        "burst limit from the rate",
        &[Set(
            "resource.aws_apigatewayv2_stage.default/dynamic.route_settings/content",
            "throttling_burst_limit",
            "route_settings.value.rate_limit",
        )],
        check_route_throttles,
    ),
    m(
        "throttle validation lacks the batch route",
        &[RemoveItem(
            "variable.route_throttles/validation#0",
            "condition",
            "\"POST /v1/recovery-keys/batch\"",
        )],
        check_route_throttles,
    ),
    m(
        "stage not after the routes",
        &[Remove(STAGE, "depends_on")],
        check_route_throttles,
    ),
    // validated variables
    m(
        "alarm_email unvalidated",
        &[Rename("variable.alarm_email/validation", "unchecked")],
        check_variables_validated,
    ),
    m(
        "provisioned concurrency unvalidated",
        &[Rename(
            "variable.key_provisioned_concurrency/validation",
            "unchecked",
        )],
        check_variables_validated,
    ),
    // moved blocks
    m(
        "function key renamed without a move",
        &[RenameEntry("locals", "functions", "manage-keys", "manage")],
        check_moved,
    ),
    m(
        "a moved block dropped",
        &[Drop("moved[from=aws_apigatewayv2_route.list_devices]")],
        check_moved,
    ),
    m(
        "a move to an address that does not exist",
        &[Set(
            "moved[from=aws_lambda_function.manage_keys]",
            "to",
            "aws_lambda_function.function[\"manage_keys\"]",
        )],
        check_moved,
    ),
];
