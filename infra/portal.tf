# The portal page: the files of web/ in a private S3 bucket, served only
# through CloudFront (origin access control), with the security headers of a
# response-headers policy, and the page's config.json written from the
# variables. The API's CORS configuration (api.tf) names this distribution.

locals {
  portal_web_dir = "${path.module}/../web"

  # Every extension under web/ needs a type here (tests/infra.rs checks it);
  # an unknown one fails the plan instead of serving a wrong type.
  portal_content_types = {
    html = "text/html; charset=utf-8"
    js   = "text/javascript; charset=utf-8"
    css  = "text/css; charset=utf-8"
    svg  = "image/svg+xml"
    json = "application/json"
    png  = "image/png"
  }

  portal_host   = var.portal_domain_name != "" ? var.portal_domain_name : aws_cloudfront_distribution.portal.domain_name
  portal_origin = "https://${local.portal_host}"

  issuer_origin = regex("^https://[^/]+", var.jwt_issuer)

  # connect-src: the issuer (discovery and token endpoint) and the API. The
  # API is named by its region's API Gateway host pattern, not its exact
  # host: the API's CORS configuration names this distribution, so naming
  # the API in the distribution's headers would be a dependency cycle.
  # script-src 'self' (nothing inline, nothing from elsewhere) is what keeps
  # foreign code out; connect-src only limits where the page talks to.
  portal_connect_src = join(" ", distinct(concat(
    ["'self'", local.issuer_origin, "https://*.execute-api.${local.region}.amazonaws.com"],
    var.portal_connect_src,
  )))
  portal_csp = join("; ", [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src ${local.portal_connect_src}",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ])

  portal_config = {
    issuer       = var.jwt_issuer
    client_id    = var.portal_client_id != "" ? var.portal_client_id : var.jwt_audience
    scopes       = var.portal_scopes
    api_base_url = var.portal_api_url != "" ? var.portal_api_url : trimsuffix(aws_apigatewayv2_stage.default.invoke_url, "/")
    # Extra authorization parameters (PORTAL_WEB_AUTH_PARAMS), e.g.
    # resource=api://recovery-portal (RFC 8707) or audience=... (Auth0).
    auth_params = var.portal_auth_params
    max_age     = var.portal_max_age == 0 ? null : var.portal_max_age
  }
}

# ---------------------------------------------------------------------------
# Bucket: private, readable only by this distribution
# ---------------------------------------------------------------------------

resource "aws_s3_bucket" "portal" {
  #checkov:skip=CKV_AWS_18:Holds only the public page's static files, each an object Terraform writes; who read them is in CloudFront's view, and every key disclosure is recorded in the audit table, not here. Server access logs would need a second bucket for no security gain.
  #checkov:skip=CKV_AWS_144:The content is rebuilt from this repository by terraform apply; a replica in a second region adds nothing a re-apply does not.
  #checkov:skip=CKV_AWS_145:The objects are the public page (HTML, JS, CSS) and its config.json, no secret; SSE-S3 encrypts them at rest. SSE-KMS would need CloudFront to be granted kms:Decrypt on a key for no confidentiality gain.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object events; changes come only from terraform apply.
  bucket_prefix = "${substr(var.name_prefix, 0, 28)}-web-"
  # Only Terraform-managed copies of web/ live here (and their old versions).
  force_destroy = true
}

resource "aws_s3_bucket_public_access_block" "portal" {
  bucket                  = aws_s3_bucket.portal.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "portal" {
  bucket = aws_s3_bucket.portal.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "portal" {
  bucket = aws_s3_bucket.portal.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "portal" {
  bucket = aws_s3_bucket.portal.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "portal" {
  bucket = aws_s3_bucket.portal.id
  rule {
    id     = "old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "portal_bucket" {
  statement {
    sid       = "CloudFrontReadsThePage"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.portal.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [aws_cloudfront_distribution.portal.arn]
    }
  }

  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.portal.arn, "${aws_s3_bucket.portal.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "portal" {
  bucket = aws_s3_bucket.portal.id
  policy = data.aws_iam_policy_document.portal_bucket.json
  # The public access block must exist first, or the policy could briefly
  # be evaluated without it.
  depends_on = [aws_s3_bucket_public_access_block.portal]
}

# ---------------------------------------------------------------------------
# Content: web/ as it is in the repository, and config.json from variables
# ---------------------------------------------------------------------------

resource "aws_s3_object" "portal_files" {
  for_each = fileset(local.portal_web_dir, "**")

  bucket        = aws_s3_bucket.portal.id
  key           = each.value
  source        = "${local.portal_web_dir}/${each.value}"
  source_hash   = filemd5("${local.portal_web_dir}/${each.value}")
  content_type  = local.portal_content_types[reverse(split(".", each.value))[0]]
  cache_control = "no-cache"
}

resource "aws_s3_object" "portal_config" {
  bucket        = aws_s3_bucket.portal.id
  key           = "config.json"
  content       = jsonencode(local.portal_config)
  content_type  = "application/json"
  cache_control = "no-store"
}

# ---------------------------------------------------------------------------
# CloudFront
# ---------------------------------------------------------------------------

resource "aws_cloudfront_origin_access_control" "portal" {
  name                              = "${var.name_prefix}-portal"
  description                       = "CloudFront reads the portal bucket with SigV4"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

# Short TTLs: a new deployment shows within minutes, and objects sent with
# no-cache/no-store are revalidated rather than held.
resource "aws_cloudfront_cache_policy" "portal" {
  name        = "${var.name_prefix}-portal"
  min_ttl     = 0
  default_ttl = 300
  max_ttl     = 3600

  parameters_in_cache_key_and_forwarded_to_origin {
    enable_accept_encoding_brotli = true
    enable_accept_encoding_gzip   = true
    cookies_config {
      cookie_behavior = "none"
    }
    headers_config {
      header_behavior = "none"
    }
    # The sign-in redirect's ?code=&state= must never reach S3 or a cache key.
    query_strings_config {
      query_string_behavior = "none"
    }
  }
}

resource "aws_cloudfront_response_headers_policy" "portal" {
  name    = "${var.name_prefix}-portal"
  comment = "Security headers of the recovery-key portal page"

  security_headers_config {
    content_security_policy {
      content_security_policy = local.portal_csp
      override                = true
    }
    strict_transport_security {
      access_control_max_age_sec = 63072000
      include_subdomains         = true
      preload                    = true
      override                   = true
    }
    referrer_policy {
      referrer_policy = "no-referrer"
      override        = true
    }
    content_type_options {
      override = true
    }
    frame_options {
      frame_option = "DENY"
      override     = true
    }
  }

  custom_headers_config {
    items {
      header   = "Cross-Origin-Opener-Policy"
      value    = "same-origin"
      override = true
    }
    items {
      header   = "Permissions-Policy"
      value    = "camera=(), microphone=(), geolocation=()"
      override = true
    }
  }
}

resource "aws_cloudfront_distribution" "portal" {
  #checkov:skip=CKV_AWS_68:The distribution serves a few static files and nothing secret; key disclosure happens at the API, which authenticates every request and is throttled (stage throttle, per-caller rate limit). Attach a web ACL (WAF) in front of both if your policy requires one; it is a per-month cost this module does not impose.
  #checkov:skip=CKV2_AWS_47:Same as CKV_AWS_68: no WAF web ACL by default (the page has no server-side code for Log4j-style payloads to reach).
  #checkov:skip=CKV_AWS_86:Standard logging needs an ACL-enabled log bucket; page views carry no key and no identity (sign-in happens at the issuer, keys at the API, whose access log and audit table record every request).
  #checkov:skip=CKV_AWS_310:One origin (this bucket); a failover origin would be a second copy of the same static files in another bucket, which a re-apply restores.
  #checkov:skip=CKV_AWS_374:Employees locked out of their PCs may be anywhere (travel, home); restricting countries would lock some of them out of recovery.
  #checkov:skip=CKV2_AWS_42:Without portal_domain_name the page is served on the distribution's own *.cloudfront.net name, which only CloudFront's certificate covers; set portal_domain_name and portal_certificate_arn to use your own.
  #checkov:skip=CKV_AWS_174:With CloudFront's default certificate the minimum protocol cannot be raised (AWS fixes it); with portal_certificate_arn set, TLSv1.2_2021 is used.
  enabled             = true
  comment             = "${var.name_prefix} portal page"
  default_root_object = "index.html"
  http_version        = "http2and3"
  price_class         = var.portal_price_class
  aliases             = var.portal_domain_name != "" ? [var.portal_domain_name] : []

  origin {
    origin_id                = "portal-bucket"
    domain_name              = aws_s3_bucket.portal.bucket_regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.portal.id
  }

  default_cache_behavior {
    target_origin_id           = "portal-bucket"
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = aws_cloudfront_cache_policy.portal.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.portal.id
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = var.portal_certificate_arn == ""
    acm_certificate_arn            = var.portal_certificate_arn != "" ? var.portal_certificate_arn : null
    ssl_support_method             = var.portal_certificate_arn != "" ? "sni-only" : null
    minimum_protocol_version       = var.portal_certificate_arn != "" ? "TLSv1.2_2021" : "TLSv1"
  }
}
