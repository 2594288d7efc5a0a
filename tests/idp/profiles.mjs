/**
 * Differences between the two IdP imitations: Okta and Microsoft Entra ID.
 *
 * The Okta profile reports the strength of a login with the `acr` and `amr`
 * claims. The Entra profile emits neither claim. It reports step-up with
 * `acrs`, which lists the requested authentication contexts (c1, c2, ...)
 * that the login satisfied.
 */

export const OKTA_ACR_VALUES = [
  'urn:okta:loa:1fa:any',
  'urn:okta:loa:1fa:pwd',
  'urn:okta:loa:2fa:any',
  'urn:okta:loa:2fa:any:ifpossible',
  'phr',
  'phrh',
];

const EMAIL_CLAIMS = ['email', 'email_verified'];

/**
 * Returns the path prefix that the provider is mounted under: empty for
 * Okta, `/{tenant}/v2.0` for Entra ID.
 */
export function mountPathFor(config) {
  return config.profile === 'entra' ? `/${config.tenant}/v2.0` : '';
}

/**
 * Returns the oidc-provider `claims` and `acrValues` settings for a profile.
 *
 * Claims listed under the `openid` scope go into every ID token. A claim
 * missing from this table is never emitted, even if the session stores it,
 * which is how the Entra profile keeps `acr` and `amr` out of its tokens.
 */
export function claimSettingsFor(profile) {
  if (profile === 'okta') {
    return {
      acrValues: OKTA_ACR_VALUES,
      claims: {
        openid: ['sub', 'acr', 'amr', 'auth_time'],
        email: EMAIL_CLAIMS,
        profile: ['name', 'preferred_username'],
        acr: null,
        auth_time: null,
        sid: null,
      },
    };
  }

  return {
    acrValues: [],
    claims: {
      openid: ['sub', 'tid', 'oid', 'auth_time'],
      email: EMAIL_CLAIMS,
      profile: ['name', 'preferred_username'],
      acrs: null,
      auth_time: null,
      sid: null,
    },
  };
}

/** Returns the authentication method references for a login. */
export function amrFor(usedOtp) {
  return usedOtp ? ['pwd', 'otp'] : ['pwd'];
}

/** Returns the Okta `acr` value for a login. */
export function oktaAcrFor(usedOtp) {
  return usedOtp ? 'urn:okta:loa:2fa:any' : 'urn:okta:loa:1fa:pwd';
}

/**
 * Returns the requested authentication contexts that the login satisfied,
 * or undefined when the `acrs` claim should be left out.
 *
 * `request` is the `acrs` member of the claims parameter's `id_token`
 * object, and only an essential request counts. The user's
 * contexts count only when this login included the one-time code, and the
 * session's `amr` records that.
 */
export function satisfiedContexts(request, user, amr) {
  if (!request || request.essential !== true || !amr?.includes('otp')) {
    return undefined;
  }

  let requested = [];
  if (Array.isArray(request.values)) {
    requested = request.values;
  } else if (typeof request.value === 'string') {
    requested = [request.value];
  }

  const satisfied = requested.filter((context) => user.contexts.includes(context));
  return satisfied.length > 0 ? satisfied : undefined;
}

/**
 * Builds the claims of `user` for an ID token or userinfo response.
 *
 * `token` is the authorization code or access token being redeemed, and
 * `requested` is the filtered claims request for this response.
 */
export function userClaims(config, user, token, requested) {
  const claims = {
    sub: user.sub,
    email: user.email,
    email_verified: user.email_verified,
    name: user.name,
    preferred_username: user.login,
  };

  if (config.profile === 'entra') {
    claims.tid = config.tenant;
    claims.oid = user.oid;
    claims.acrs = satisfiedContexts(requested?.acrs, user, token?.amr);
  }
  return claims;
}
