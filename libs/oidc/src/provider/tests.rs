use super::*;

fn okta() -> serde_json::Value {
    serde_json::json!({
        "name": "okta",
        "kind": "oauth2",
        "issuer": "https://example.okta.com",
        "client_id": "client",
        "client_secret": "secret",
        "acr_values": ["urn:okta:loa:2fa:any"]
    })
}

fn entra(mode: &str, context: Option<&str>) -> serde_json::Value {
    let mut value = serde_json::json!({
        "name": "entra",
        "kind": "entra",
        "issuer": "https://login.microsoftonline.com/5f1a0c3e-0000-4000-8000-000000000001/v2.0",
        "client_id": "client",
        "client_secret": "env:ENTRA_SECRET",
        "entra_mode": mode,
    });
    if let Some(context) = context {
        value["auth_context"] = context.into();
    }
    value
}

fn settings(value: serde_json::Value) -> ProviderSettings {
    serde_json::from_value(value).expect("test settings deserialize")
}

fn codes(settings: &ProviderSettings) -> Vec<(String, &'static str)> {
    settings
        .problems()
        .into_iter()
        .map(|problem| (problem.field, problem.code))
        .collect()
}

#[test]
fn secret_debug_is_redacted() {
    let secret = ClientSecret::new("hunter2");
    assert!(!format!("{secret:?}").contains("hunter2"));
}

#[test]
fn secret_reference_reads_file() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("stepup-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("secret");
    std::fs::write(&path, "from-file\n")?;
    let secret = ClientSecret::new(format!("file:{}", path.display()));
    assert_eq!(secret.resolve("p")?, "from-file");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn missing_env_reference_names_the_variable() {
    let secret = ClientSecret::new("env:STEPUP_TEST_SECRET_THAT_IS_NOT_SET");
    let error = secret.resolve("okta").err().map(|e| e.to_string());
    assert!(error.is_some_and(|e| e.contains("STEPUP_TEST_SECRET_THAT_IS_NOT_SET")));
}

#[test]
fn withheld_secret_does_not_resolve() {
    let result = ClientSecret::withheld().resolve("okta");
    assert!(matches!(result, Err(SecretError::Withheld { .. })));
}

#[test]
fn valid_providers_have_no_problems() {
    assert_eq!(codes(&settings(okta())), vec![]);
    assert_eq!(codes(&settings(entra("oidc", None))), vec![]);
    assert_eq!(codes(&settings(entra("acrs", Some("c99")))), vec![]);
}

#[test]
fn entra_defaults_to_oid_binding_and_oidc_mode() {
    let mut value = entra("oidc", None);
    value
        .as_object_mut()
        .map(|object| object.remove("entra_mode"));
    let provider = settings(value);
    assert_eq!(provider.binding, ApproverBinding::Oid);
    assert_eq!(provider.entra_mode, Some(EntraMode::Oidc));
    assert_eq!(settings(okta()).binding, ApproverBinding::Email);
}

#[test]
fn auth_context_outside_c1_to_c99_is_rejected() {
    for bad in ["c100", "c0", "c01", "C1", "c", "x1"] {
        let provider = settings(entra("acrs", Some(bad)));
        assert_eq!(
            codes(&provider),
            vec![("auth_context".to_owned(), "invalid_auth_context")],
            "{bad} was accepted"
        );
    }
    assert!(is_auth_context_id("c1"));
    assert!(is_auth_context_id("c99"));
}

#[test]
fn acrs_mode_needs_auth_context() {
    let provider = settings(entra("acrs", None));
    assert_eq!(
        codes(&provider),
        vec![("auth_context".to_owned(), "invalid_auth_context")]
    );
}

#[test]
fn entra_issuer_must_name_one_tenant() {
    for bad in [
        "https://login.microsoftonline.com/common/v2.0",
        "https://login.microsoftonline.com/organizations/v2.0",
        "https://login.microsoftonline.com/tenant",
        "https://sts.windows.net/tenant/",
    ] {
        let mut value = entra("oidc", None);
        value["issuer"] = bad.into();
        assert_eq!(
            codes(&settings(value)),
            vec![("issuer".to_owned(), "invalid_issuer")],
            "{bad} was accepted"
        );
    }
}

#[test]
fn entra_tenant_comes_from_issuer_path() {
    assert_eq!(
        entra_tenant("http://127.0.0.1:4000/tenant-1/v2.0").ok(),
        Some("tenant-1".to_owned())
    );
}

#[test]
fn issuer_must_be_https_url() {
    for bad in [
        "not a url",
        "http://idp.example.com",
        "ftp://idp.example.com",
        "https://idp.example.com/?x=1",
    ] {
        let mut value = okta();
        value["issuer"] = bad.into();
        assert_eq!(
            codes(&settings(value)),
            vec![("issuer".to_owned(), "invalid_issuer")],
            "{bad} was accepted"
        );
    }
}

#[test]
fn empty_secret_is_missing() {
    for bad in ["", "env:", "file:"] {
        let mut value = okta();
        value["client_secret"] = bad.into();
        assert_eq!(
            codes(&settings(value)),
            vec![("client_secret".to_owned(), "missing_client_secret")],
            "{bad:?} was accepted"
        );
    }
}

#[test]
fn oauth2_rejects_entra_fields() {
    let mut value = okta();
    value["entra_mode"] = "acrs".into();
    assert_eq!(
        codes(&settings(value)),
        vec![("entra_mode".to_owned(), "invalid_entra_mode")]
    );
}

#[test]
fn oid_binding_needs_entra() {
    let mut value = okta();
    value["binding"] = "oid".into();
    assert_eq!(
        codes(&settings(value)),
        vec![("binding".to_owned(), "invalid_binding")]
    );
}

#[test]
fn scopes_need_openid_and_algorithms_are_known() {
    let mut value = okta();
    value["scopes"] = serde_json::json!(["email"]);
    value["id_token_signing_algs"] = serde_json::json!(["HS256"]);
    assert_eq!(
        codes(&settings(value)),
        vec![
            ("scopes".to_owned(), "invalid_scopes"),
            ("id_token_signing_algs".to_owned(), "invalid_signing_algs"),
        ]
    );
}

#[test]
fn entra_oidc_requirement_forces_reauthentication() {
    let provider = settings(entra("oidc", None));
    let requirement = provider.requirement(Some(&["x".to_owned()]), Some(300));
    assert_eq!(requirement.max_age, Some(0));
    assert!(requirement.prompt_login);
    assert!(requirement.acr_values.is_empty());
    assert_eq!(requirement.auth_context, None);
}

#[test]
fn entra_acrs_requirement_names_context() {
    let provider = settings(entra("acrs", Some("c7")));
    let requirement = provider.requirement(None, None);
    assert_eq!(requirement.entra_mode, Some(EntraMode::Acrs));
    assert_eq!(requirement.auth_context.as_deref(), Some("c7"));
    assert!(!requirement.prompt_login);
}

#[test]
fn oauth2_requirement_applies_overrides() {
    let provider = settings(okta());
    let requirement = provider.requirement(Some(&["phrh".to_owned()]), Some(60));
    assert_eq!(requirement.acr_values, vec!["phrh"]);
    assert_eq!(requirement.max_age, Some(60));
    assert_eq!(provider.requirement(None, None).max_age, Some(0));
}
