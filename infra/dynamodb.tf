# DynamoDB tables. src/adapters/aws/schema.rs is the single source of truth for names,
# keys, indexes and projections; tests/infra/terraform.rs fails if these drift from it.
#
# All tables: on-demand capacity, point-in-time recovery, deletion protection
# and SSE with the dedicated tables CMK (see kms.tf for why it is separate from
# the recovery-key CMK).

# Tenant items, device items (metadata + sealed keys) and key-pointer items
# (a superseded key's pointer also holds its ciphertext until expires_at).
resource "aws_dynamodb_table" "devices" {
  name                        = "${var.name_prefix}-devices"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  attribute {
    name = "owner_key"
    type = "S"
  }

  attribute {
    name = "device_id"
    type = "S"
  }

  attribute {
    name = "key_bucket"
    type = "S"
  }

  attribute {
    name = "key_hex"
    type = "S"
  }

  attribute {
    name = "rotation_tenant"
    type = "S"
  }

  attribute {
    name = "rotation_since"
    type = "S"
  }

  # Devices of one owner. Projects no ciphertext (the sealed map stays in the
  # base table): the list function may query this index, never the table.
  global_secondary_index {
    name            = "by_owner"
    hash_key        = "owner_key"
    range_key       = "device_id"
    projection_type = "INCLUDE"
    non_key_attributes = [
      "tenant_id",
      "owner",
      "display_name",
      "os",
      "managed_by",
      "keys",
      "self_service",
      "helpdesk",
    ]
  }

  # Helpdesk lookup by recovery-key ID prefix.
  global_secondary_index {
    name            = "by_key"
    hash_key        = "key_bucket"
    range_key       = "key_hex"
    projection_type = "INCLUDE"
    non_key_attributes = [
      "tenant_id",
      "key_id",
      "device_id",
      "display_name",
      "owner",
      "volume_type",
      "created_at",
    ]
  }

  # Devices with keys due for rotation (disclosed, not superseded): sparse,
  # per tenant, oldest disclosure first. No ciphertext, no escrow digest.
  global_secondary_index {
    name            = "by_rotation"
    hash_key        = "rotation_tenant"
    range_key       = "rotation_since"
    projection_type = "INCLUDE"
    non_key_attributes = [
      "tenant_id",
      "device_id",
      "owner",
      "display_name",
      "os",
      "managed_by",
      "keys",
    ]
  }

  # Superseded keys are deleted when the tenant's retention ends.
  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.tables.arn
  }
}

# Append-only audit events: pk = <tenant>#<actor>#<request-id>#<event-id>,
# one item per event (every attempt of a request is an event of its own).
resource "aws_dynamodb_table" "audit" {
  name                        = "${var.name_prefix}-audit"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "tshard"
    type = "S"
  }

  attribute {
    name = "ts"
    type = "S"
  }

  attribute {
    name = "device_key"
    type = "S"
  }

  attribute {
    name = "actor_key"
    type = "S"
  }

  global_secondary_index {
    name            = "by_time"
    hash_key        = "tshard"
    range_key       = "ts"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "by_device"
    hash_key        = "device_key"
    range_key       = "ts"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "by_actor"
    hash_key        = "actor_key"
    range_key       = "ts"
    projection_type = "ALL"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.tables.arn
  }
}

# Per-caller disclosure windows (with the grants an identical retry may
# replay) and per-caller hourly counts of denied events; stale items expire
# through TTL.
resource "aws_dynamodb_table" "rate_limits" {
  name                        = "${var.name_prefix}-rate_limits"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.tables.arn
  }
}
