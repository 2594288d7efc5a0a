//! The OpenID Connect relying-party side of step-up: provider settings, discovery, the
//! authorization request, the token exchange and the checks on the ID token.

pub mod authorize;
pub mod http;
pub mod provider;
pub mod verify;
