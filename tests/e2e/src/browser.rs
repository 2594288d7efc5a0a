//! A scripted browser for the end-to-end tests: an HTTP client with a cookie
//! store that follows redirects itself, so a test can see every hop of an
//! OpenID Connect round trip, and that fills in and submits HTML forms.
//!
//! It only visits loopback hosts (127.0.0.0/8, `::1`, `localhost`), because
//! every server in these tests runs on this machine. A redirect elsewhere is
//! a bug and fails with [`BrowserError::NotLoopback`].
//!
//! Error messages show URLs without their query, because the query of an
//! authorization response carries the code and state.

use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{CONTENT_TYPE, HeaderMap, LOCATION};
use reqwest::{Client, Method, StatusCode, redirect};
use scraper::{ElementRef, Html};
use url::{Host, Url};

/// Redirects that [`Browser::get`] and [`Browser::submit_form`] follow
/// before they fail, unless changed with [`Browser::set_max_redirects`].
pub const DEFAULT_MAX_REDIRECTS: usize = 10;

/// Timeout of one HTTP request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors from a browser request or form submission.
#[derive(thiserror::Error)]
pub enum BrowserError {
    #[error("failed to build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),

    #[error("invalid URL {url:?}: {source}")]
    InvalidUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },

    #[error(
        "rejected request to {url}: the test browser only visits loopback hosts (127.0.0.0/8, ::1, localhost) over http or https"
    )]
    NotLoopback { url: String },

    #[error("{method} {url} failed: {source}")]
    Request {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("failed to read the body of {url}: {source}")]
    Body {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("{url} redirected to an invalid Location {location:?}: {reason}")]
    InvalidLocation {
        url: String,
        location: String,
        reason: String,
    },

    #[error("more than {max} redirects; visited: {}", .chain.join(" -> "))]
    TooManyRedirects { max: usize, chain: Vec<String> },

    #[error("no <form id={form_id:?}> on {url}")]
    FormNotFound { form_id: String, url: String },

    #[error("the form {form_id:?} on {url} has an invalid action {action:?}: {source}")]
    InvalidFormAction {
        form_id: String,
        url: String,
        action: String,
        #[source]
        source: url::ParseError,
    },

    #[error("the form {form_id:?} on {url} has method {method:?}, expected get or post")]
    UnsupportedFormMethod {
        form_id: String,
        url: String,
        method: String,
    },
}

// Tests that return `Result` print the error with `Debug`, so it shows the
// message, with the process log on its own lines, instead of the fields.
impl std::fmt::Debug for BrowserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The response at the end of a navigation, after all redirects.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: StatusCode,
    /// URL of the last request, the one that returned this page.
    pub url: Url,
    pub headers: HeaderMap,
    pub body: String,
    /// Every URL requested in this navigation, the first to `url`.
    pub redirects: Vec<Url>,
}

impl Page {
    /// Returns the first value of the query parameter `name` in the page's
    /// URL, such as `code` on a redirect URI.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.url
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// Returns a response header as text, when present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// Returns whether the response is a redirect, as returned by
    /// [`Browser::get_without_redirects`].
    pub fn is_redirect(&self) -> bool {
        self.status.is_redirection()
    }

    /// Returns the `Location` header resolved against the page's URL.
    pub fn location(&self) -> Option<Url> {
        self.url.join(self.header(LOCATION.as_str())?).ok()
    }
}

/// One HTTP request of a navigation.
struct Hop {
    method: Method,
    url: Url,
    form_body: Option<String>,
}

/// A form read from a page, ready to submit.
struct Form {
    method: Method,
    action: Url,
    fields: Vec<(String, String)>,
}

/// An HTTP client that keeps cookies like a browser and records redirects.
#[derive(Debug)]
pub struct Browser {
    client: Client,
    jar: Arc<Jar>,
    max_redirects: usize,
    chain: Vec<Url>,
    stop_before: Option<String>,
}

impl Browser {
    /// Creates a browser with an empty cookie store.
    pub fn new() -> Result<Self, BrowserError> {
        let jar = Arc::new(Jar::default());
        let client = Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .redirect(redirect::Policy::none())
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .user_agent("stepup-e2e-browser")
            .build()
            .map_err(BrowserError::Client)?;

        Ok(Self {
            client,
            jar,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            chain: Vec::new(),
            stop_before: None,
        })
    }

    /// Sets how many redirects one navigation follows before it fails.
    pub fn set_max_redirects(&mut self, max: usize) {
        self.max_redirects = max;
    }

    /// Makes navigations return a redirect, instead of following it, when its resolved
    /// `Location` starts with `prefix`, so a test can inspect or change the next request
    /// (such as a callback URL with the authorization code) before it is sent. `None`
    /// follows every redirect again.
    pub fn stop_before(&mut self, prefix: Option<&str>) {
        self.stop_before = prefix.map(str::to_owned);
    }

    /// Requests `url` with GET and follows redirects.
    pub async fn get(&mut self, url: impl AsRef<str>) -> Result<Page, BrowserError> {
        let url = parse_url(url.as_ref())?;
        self.navigate(Hop {
            method: Method::GET,
            url,
            form_body: None,
        })
        .await
    }

    /// Requests `url` with GET and returns the first response, also when it
    /// is a redirect.
    pub async fn get_without_redirects(
        &mut self,
        url: impl AsRef<str>,
    ) -> Result<Page, BrowserError> {
        let url = parse_url(url.as_ref())?;
        self.chain.clear();
        self.send(&Hop {
            method: Method::GET,
            url,
            form_body: None,
        })
        .await
    }

    /// Posts `fields` url-encoded to `url` and follows redirects.
    pub async fn post_form(
        &mut self,
        url: impl AsRef<str>,
        fields: &[(&str, &str)],
    ) -> Result<Page, BrowserError> {
        let url = parse_url(url.as_ref())?;
        let owned: Vec<(String, String)> = fields
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        self.navigate(Hop {
            method: Method::POST,
            url,
            form_body: Some(encode_fields(&owned)),
        })
        .await
    }

    /// Submits the form `form_id` of `page` as a browser would: its action
    /// resolved against the page URL, its method, the current values of its
    /// inputs (hidden ones included), with `fields` replacing or adding
    /// values by name. Follows redirects.
    pub async fn submit_form(
        &mut self,
        page: &Page,
        form_id: &str,
        fields: &[(&str, &str)],
    ) -> Result<Page, BrowserError> {
        let mut form = find_form(page, form_id)?;
        for (name, value) in fields {
            set_field(&mut form.fields, name, value);
        }

        let hop = if form.method == Method::POST {
            Hop {
                method: Method::POST,
                url: form.action,
                form_body: Some(encode_fields(&form.fields)),
            }
        } else {
            let mut url = form.action;
            url.set_query(Some(&encode_fields(&form.fields)));
            Hop {
                method: Method::GET,
                url,
                form_body: None,
            }
        };
        self.navigate(hop).await
    }

    /// Returns every URL requested in the last navigation, in order.
    pub fn redirect_chain(&self) -> &[Url] {
        &self.chain
    }

    /// Returns the `Cookie` header this browser would send to `url`.
    pub fn cookie_header(&self, url: &Url) -> Option<String> {
        let value = self.jar.cookies(url)?;
        value.to_str().ok().map(str::to_owned)
    }

    /// Sends `first` and follows redirects until a response is not one.
    async fn navigate(&mut self, first: Hop) -> Result<Page, BrowserError> {
        self.chain.clear();
        let mut hop = first;
        loop {
            let page = self.send(&hop).await?;
            if !page.is_redirect() || page.header(LOCATION.as_str()).is_none() {
                return Ok(page);
            }
            let stop = self.stop_before.as_deref().is_some_and(|prefix| {
                page.location()
                    .is_some_and(|location| location.as_str().starts_with(prefix))
            });
            if stop {
                return Ok(page);
            }

            // The chain contains the first request plus one URL per redirect.
            if self.chain.len() > self.max_redirects {
                return Err(BrowserError::TooManyRedirects {
                    max: self.max_redirects,
                    chain: self.chain.iter().map(without_query).collect(),
                });
            }
            hop = next_hop(&page, hop)?;
        }
    }

    /// Sends one request, records its URL and reads the whole response.
    async fn send(&mut self, hop: &Hop) -> Result<Page, BrowserError> {
        ensure_loopback(&hop.url)?;
        self.chain.push(hop.url.clone());

        let mut request = self.client.request(hop.method.clone(), hop.url.clone());
        if let Some(body) = &hop.form_body {
            request = request
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|source| BrowserError::Request {
                method: hop.method.clone(),
                url: without_query(&hop.url),
                source,
            })?;

        let status = response.status();
        tracing::debug!(method = %hop.method, path = hop.url.path(), status = status.as_u16(), "browser request");
        let headers = response.headers().clone();
        let body = response.text().await.map_err(|source| BrowserError::Body {
            url: without_query(&hop.url),
            source,
        })?;

        Ok(Page {
            status,
            url: hop.url.clone(),
            headers,
            body,
            redirects: self.chain.clone(),
        })
    }
}

/// Builds the request that follows the redirect `page`, the response to
/// `previous`. As browsers do, 307 and 308 repeat the method and body, and
/// other redirects become a GET without a body.
fn next_hop(page: &Page, previous: Hop) -> Result<Hop, BrowserError> {
    let location = page.header(LOCATION.as_str()).unwrap_or_default();
    let url = page
        .url
        .join(location)
        .map_err(|error| BrowserError::InvalidLocation {
            url: without_query(&page.url),
            location: without_query_text(location),
            reason: error.to_string(),
        })?;

    let keeps_method = matches!(
        page.status,
        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
    );
    if keeps_method {
        return Ok(Hop { url, ..previous });
    }

    Ok(Hop {
        method: Method::GET,
        url,
        form_body: None,
    })
}

fn parse_url(text: &str) -> Result<Url, BrowserError> {
    Url::parse(text).map_err(|source| BrowserError::InvalidUrl {
        url: without_query_text(text),
        source,
    })
}

fn ensure_loopback(url: &Url) -> Result<(), BrowserError> {
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    let web = matches!(url.scheme(), "http" | "https");

    if loopback && web {
        Ok(())
    } else {
        Err(BrowserError::NotLoopback {
            url: without_query(url),
        })
    }
}

/// Formats `url` for messages without its query and fragment, which may hold
/// an authorization code or state.
fn without_query(url: &Url) -> String {
    let mut display = url.clone();
    if display.query().is_some() {
        display.set_query(Some("..."));
    }
    display.set_fragment(None);
    display.to_string()
}

fn without_query_text(text: &str) -> String {
    match text.split_once(['?', '#']) {
        Some((before, _)) => format!("{before}?..."),
        None => text.to_owned(),
    }
}

fn encode_fields(fields: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Replaces the first field called `name`, or appends one.
fn set_field(fields: &mut Vec<(String, String)>, name: &str, value: &str) {
    match fields.iter_mut().find(|(key, _)| key == name) {
        Some(field) => field.1 = value.to_owned(),
        None => fields.push((name.to_owned(), value.to_owned())),
    }
}

/// Reads the form with `id="{form_id}"` from the page's HTML.
fn find_form(page: &Page, form_id: &str) -> Result<Form, BrowserError> {
    let document = Html::parse_document(&page.body);
    let form = document
        .root_element()
        .descendants()
        .filter_map(ElementRef::wrap)
        .find(|element| element.value().name() == "form" && element.value().id() == Some(form_id))
        .ok_or_else(|| BrowserError::FormNotFound {
            form_id: form_id.to_owned(),
            url: without_query(&page.url),
        })?;

    Ok(Form {
        method: form_method(page, form_id, form)?,
        action: form_action(page, form_id, form)?,
        fields: form_fields(form),
    })
}

fn form_method(page: &Page, form_id: &str, form: ElementRef<'_>) -> Result<Method, BrowserError> {
    let method = form.value().attr("method").unwrap_or("get");
    if method.eq_ignore_ascii_case("post") {
        Ok(Method::POST)
    } else if method.eq_ignore_ascii_case("get") || method.is_empty() {
        Ok(Method::GET)
    } else {
        Err(BrowserError::UnsupportedFormMethod {
            form_id: form_id.to_owned(),
            url: without_query(&page.url),
            method: method.to_owned(),
        })
    }
}

/// Resolves the form's action against the page URL; a missing or empty
/// action submits to the page URL itself.
fn form_action(page: &Page, form_id: &str, form: ElementRef<'_>) -> Result<Url, BrowserError> {
    let action = form
        .value()
        .attr("action")
        .map(str::trim)
        .unwrap_or_default();
    if action.is_empty() {
        let mut url = page.url.clone();
        url.set_fragment(None);
        return Ok(url);
    }

    page.url
        .join(action)
        .map_err(|source| BrowserError::InvalidFormAction {
            form_id: form_id.to_owned(),
            url: without_query(&page.url),
            action: without_query_text(action),
            source,
        })
}

/// Collects the values a browser would submit before the user types:
/// named inputs (checked ones only for checkboxes and radios), textareas
/// and the selected option of each select. Buttons are left out.
fn form_fields(form: ElementRef<'_>) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for element in form.descendants().filter_map(ElementRef::wrap) {
        let tag = element.value();
        let Some(name) = tag.attr("name").filter(|name| !name.is_empty()) else {
            continue;
        };
        if tag.attr("disabled").is_some() {
            continue;
        }

        let value = match tag.name() {
            "input" => input_value(element),
            "textarea" => Some(element.text().collect()),
            "select" => selected_option(element),
            _ => None,
        };
        if let Some(value) = value {
            fields.push((name.to_owned(), value));
        }
    }
    fields
}

fn input_value(input: ElementRef<'_>) -> Option<String> {
    let tag = input.value();
    let kind = tag.attr("type").unwrap_or("text").to_ascii_lowercase();
    match kind.as_str() {
        "submit" | "button" | "image" | "reset" | "file" => None,
        "checkbox" | "radio" if tag.attr("checked").is_none() => None,
        "checkbox" | "radio" => Some(tag.attr("value").unwrap_or("on").to_owned()),
        _ => Some(tag.attr("value").unwrap_or_default().to_owned()),
    }
}

fn selected_option(select: ElementRef<'_>) -> Option<String> {
    let options: Vec<ElementRef<'_>> = select
        .descendants()
        .filter_map(ElementRef::wrap)
        .filter(|element| element.value().name() == "option")
        .collect();
    let chosen = options
        .iter()
        .find(|option| option.value().attr("selected").is_some())
        .or(options.first())?;

    let value = match chosen.value().attr("value") {
        Some(value) => value.to_owned(),
        None => chosen.text().collect::<String>().trim().to_owned(),
    };
    Some(value)
}

#[cfg(test)]
#[path = "browser_tests.rs"]
mod tests;
