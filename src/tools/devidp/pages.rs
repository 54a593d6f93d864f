//! The provider's HTML: the sign-in form and the error page.

use super::*;

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page of the provider: no script, the portal's stylesheet only.
fn idp_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n<link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\n<link rel=\"stylesheet\" href=\"/style.css\">\n</head>\n<body>\n<main class=\"idp\">\n{body}</main>\n</body>\n</html>\n",
        title = html_escape(title)
    )
}

/// The page shown for a request that cannot go on.
pub fn error_page(error: &FlowError) -> String {
    idp_page(
        "Sign-in request refused",
        &format!(
            "<h1>This sign-in request cannot be completed</h1>\n<p class=\"alert\" role=\"alert\">{}</p>\n<p>Go back to the portal and sign in again from there.</p>\n",
            html_escape(&error.0)
        ),
    )
}

/// The sign-in form: inputs `tenant`, `user` and `scope` (the permissions
/// to put in the token), and the request's own parameters as hidden fields
/// (its `scope` as `requested_scope`, so the names do not clash).
pub fn sign_in_page(
    req: &AuthorizeRequest,
    tenant: &str,
    user: &str,
    scope: &str,
    error: Option<&FlowError>,
) -> String {
    let mut body = String::from(
        "<h1>Sign in</h1>\n<p class=\"notice\">Development identity provider of <code>portal serve</code>: anyone can sign in as anyone. For use on this machine only.</p>\n",
    );
    if let Some(e) = error {
        body.push_str(&format!(
            "<p class=\"alert\" role=\"alert\" id=\"form-error\">{}</p>\n",
            html_escape(&e.0)
        ));
    }
    body.push_str("<form method=\"post\" action=\"/authorize\" class=\"stack\">\n");
    for (name, value) in req.hidden_fields() {
        let name = if name == "scope" {
            "requested_scope"
        } else {
            name
        };
        body.push_str(&format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
            html_escape(value)
        ));
    }
    let described = if error.is_some() {
        " aria-describedby=\"form-error\""
    } else {
        ""
    };
    body.push_str(&format!(
        "<label for=\"tenant\">Tenant</label>\n<input id=\"tenant\" name=\"tenant\" required maxlength=\"128\" autocomplete=\"organization\" value=\"{}\"{described}>\n\
         <label for=\"user\">User</label>\n<input id=\"user\" name=\"user\" required maxlength=\"128\" autocomplete=\"username\" value=\"{}\"{described}>\n\
         <label for=\"scope\">Permissions (separated by spaces)</label>\n<input id=\"scope\" name=\"scope\" required maxlength=\"1024\" value=\"{}\" aria-describedby=\"scope-hint\">\n\
         <p class=\"hint\" id=\"scope-hint\">RecoveryKey.Read: your own devices. RecoveryKey.Read.All: the helpdesk screen. AuditLog.Read.All: the audit screen.</p>\n\
         <button type=\"submit\" class=\"primary\">Sign in</button>\n</form>\n\
         <p class=\"hint\">Demo data: tenant contoso (users alice and bob), tenant fabrikam (user carol; self-service off).</p>\n",
        html_escape(tenant),
        html_escape(user),
        html_escape(scope),
    ));
    idp_page("Sign in · development identity provider", &body)
}
