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

fn store_at(dir: &Path) -> Box<dyn Store> {
    open(
        &StoreSpec::PromptTrain(dir.to_path_buf()),
        &crate::unlock::KeyOptions::default(),
    )
    .unwrap()
}

#[test]
fn compare_and_replace_keeps_a_value_another_application_wrote_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_at(dir.path());
    let id: CredentialId = "account:acc_a/oauth_access_token".parse().unwrap();
    let c = |v: &str| Credential::new(id.clone(), Kind::OauthAccess, v);
    crate::store::test_support::assert_compare_and_replace_keeps_a_racing_write(
        s.as_ref(),
        store_at(dir.path()),
        &c("at-ours"),
        &c("at-old"),
        &c("at-theirs"),
    );
}

#[test]
fn compare_and_delete_keeps_a_value_another_application_wrote_meanwhile() {
    use crate::store::test_support::assert_compare_and_delete_keeps_a_racing_write;
    let dir = tempfile::tempdir().unwrap();
    let s = store_at(dir.path());
    // An account file, and a train's client-key file: two file shapes.
    s.write(&Credential::new(
        "account:acc_a/oauth_refresh_token".parse().unwrap(),
        Kind::OauthRefresh,
        "rt-keep",
    ))
    .unwrap();
    for (id, kind) in [
        ("account:acc_a/oauth_access_token", Kind::OauthAccess),
        ("train:team-a/client_key/0", Kind::ClientKey),
    ] {
        let id: CredentialId = id.parse().unwrap();
        assert_compare_and_delete_keeps_a_racing_write(
            s.as_ref(),
            store_at(dir.path()),
            &Credential::new(id.clone(), kind, "v1"),
            &Credential::new(id, kind, "theirs"),
        );
    }
    let keep = s.read(&"account:acc_a/oauth_refresh_token".parse().unwrap());
    assert_eq!(keep.unwrap().unwrap().secret.expose(), "rt-keep");
}
