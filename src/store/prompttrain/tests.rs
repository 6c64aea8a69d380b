//! Tests of the `prompttrain:` store.

use super::*;

#[test]
fn ids_without_a_place_are_refused_with_a_reason() {
    for (id, ok) in [
        ("account:acc_a/api_key", true),
        ("account:acc_a/oauth_access_token", true),
        ("account:acc_a/oauth_refresh_token", true),
        ("train:team-a/client_key/0", true),
        ("train:team-a/client_key/12", true),
        ("account:acc_a/slack_webhook_url", true),
        ("account:acc_a/admin_api_key", true),
        ("account:acc_a/proxy.url", true),
        ("account:acc_a/headers.authorization", true),
        ("account:acc_a/client_secrets.0", true),
        ("account:acc_a/type", false),
        ("account:acc_a/accountId", false),
        ("account:acc_a/oauth.accessToken", false),
        ("account:acc_a/oauth.refreshToken", false),
        ("account:acc_a/slack.webhook_url", false),
        ("account:acc_a/0.x", false),
        ("account:acc_a/a..b", false),
        ("account:/api_key", false),
        ("train:team-a/client_key/01", false),
        ("train:team-a/client_key/x", false),
        ("train:../x/client_key/0", false),
        ("train:a b/client_key/0", false),
        ("openai/api_key", false),
        ("env/OPENAI_API_KEY", false),
    ] {
        let id: CredentialId = id.parse().unwrap();
        assert_eq!(parse_target(&id).is_ok(), ok, "{id}");
    }
}
