//! The OpenID Connect relying-party side of step-up: provider settings, discovery, the
//! authorization request, the token exchange and the checks on the ID token.

pub mod authorize;
pub mod claims;
pub mod discovery;
pub mod http;
pub mod jwks;
pub mod provider;
pub mod token;
pub mod verify;
