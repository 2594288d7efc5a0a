//! Unit tests of form parsing, redirect resolution and the loopback guard;
//! none of them sends a request.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use super::*;

fn page(url: &str, body: &str) -> Page {
    let url = Url::parse(url).expect("test URL is valid");
    Page {
        status: StatusCode::OK,
        url: url.clone(),
        headers: HeaderMap::new(),
        body: body.to_owned(),
        redirects: vec![url],
    }
}

const LOGIN: &str = r#"<!DOCTYPE html><html><body>
<form id="search" action="/search"><input name="q"></form>
<form id="login" method="post" action="interaction/abc/login">
  <input type="hidden" name="csrf" value="t0k">
  <input name="login" value="">
  <input type="password" name="password">
  <input name="otp" disabled value="x">
  <input type="checkbox" name="remember" value="yes" checked>
  <input type="checkbox" name="spam">
  <select name="lang"><option value="en">English</option><option selected>de</option></select>
  <textarea name="note">hi</textarea>
  <button type="submit" name="go">Go</button>
  <input type="submit" name="submit" value="Log in">
</form></body></html>"#;

#[test]
fn find_form_reads_method_action_and_defaults() {
    let page = page("http://127.0.0.1:4000/okta/interaction/abc?x=1", LOGIN);

    let form = find_form(&page, "login").expect("form exists");

    assert_eq!(form.method, Method::POST);
    assert_eq!(
        form.action.as_str(),
        "http://127.0.0.1:4000/okta/interaction/interaction/abc/login"
    );
    let expected = [
        ("csrf", "t0k"),
        ("login", ""),
        ("password", ""),
        ("remember", "yes"),
        ("lang", "de"),
        ("note", "hi"),
    ];
    let found: Vec<(&str, &str)> = form
        .fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn find_form_defaults_to_get_and_page_url() {
    let page = page(
        "http://localhost:80/here#top",
        r#"<form id="f"><input name="a" value="1"></form>"#,
    );

    let form = find_form(&page, "f").expect("form exists");

    assert_eq!(form.method, Method::GET);
    assert_eq!(form.action.as_str(), "http://localhost/here");
}

#[test]
fn find_form_reports_missing_form() {
    let page = page("http://127.0.0.1/?code=secret", LOGIN);

    let error = find_form(&page, "nope").err().expect("no such form");

    assert!(matches!(error, BrowserError::FormNotFound { .. }));
    assert!(!error.to_string().contains("secret"));
}

#[test]
fn find_form_rejects_dialog_method() {
    let page = page(
        "http://127.0.0.1/",
        r#"<form id="d" method="dialog"></form>"#,
    );

    let error = find_form(&page, "d").err().expect("dialog is unsupported");

    assert!(matches!(error, BrowserError::UnsupportedFormMethod { .. }));
}

#[test]
fn set_field_replaces_then_appends() {
    let mut fields = vec![("login".to_owned(), String::new())];

    set_field(&mut fields, "login", "alice");
    set_field(&mut fields, "otp", "123456");

    assert_eq!(
        fields,
        vec![
            ("login".to_owned(), "alice".to_owned()),
            ("otp".to_owned(), "123456".to_owned()),
        ]
    );
}

#[test]
fn encode_fields_escapes_values() {
    let fields = vec![("login".to_owned(), "a b@example.com&x".to_owned())];

    assert_eq!(encode_fields(&fields), "login=a+b%40example.com%26x");
}

#[test]
fn ensure_loopback_accepts_local_hosts() {
    for url in [
        "http://127.0.0.1:1/",
        "http://127.8.9.10/",
        "http://[::1]:8080/a",
        "https://localhost/",
    ] {
        let url = Url::parse(url).expect("test URL is valid");
        assert!(ensure_loopback(&url).is_ok(), "{url} is loopback");
    }
}

#[test]
fn ensure_loopback_rejects_other_hosts() {
    for url in [
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://example.com/",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
    ] {
        let url = Url::parse(url).expect("test URL is valid");
        assert!(
            matches!(ensure_loopback(&url), Err(BrowserError::NotLoopback { .. })),
            "{url} is not loopback"
        );
    }
}

#[test]
fn next_hop_resolves_relative_location_as_get() {
    let mut redirect = page("http://127.0.0.1:9/a/b?x=1", "");
    redirect.status = StatusCode::FOUND;
    redirect
        .headers
        .insert(LOCATION, "../c?code=1".parse().expect("valid header"));
    let previous = Hop {
        method: Method::POST,
        url: redirect.url.clone(),
        form_body: Some("a=1".to_owned()),
    };

    let hop = next_hop(&redirect, previous).expect("location is valid");

    assert_eq!(hop.method, Method::GET);
    assert_eq!(hop.url.as_str(), "http://127.0.0.1:9/c?code=1");
    assert_eq!(hop.form_body, None);
}

#[test]
fn next_hop_repeats_post_on_307() {
    let mut redirect = page("http://127.0.0.1:9/a", "");
    redirect.status = StatusCode::TEMPORARY_REDIRECT;
    redirect
        .headers
        .insert(LOCATION, "/b".parse().expect("valid header"));
    let previous = Hop {
        method: Method::POST,
        url: redirect.url.clone(),
        form_body: Some("a=1".to_owned()),
    };

    let hop = next_hop(&redirect, previous).expect("location is valid");

    assert_eq!(hop.method, Method::POST);
    assert_eq!(hop.url.as_str(), "http://127.0.0.1:9/b");
    assert_eq!(hop.form_body.as_deref(), Some("a=1"));
}

#[test]
fn without_query_hides_code_and_state() {
    let url = Url::parse("http://127.0.0.1/cb?code=c0de&state=s7#frag").expect("valid");

    assert_eq!(without_query(&url), "http://127.0.0.1/cb?...");
    assert_eq!(without_query_text("/cb?code=c0de"), "/cb?...");
}
