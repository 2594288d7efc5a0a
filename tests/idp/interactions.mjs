/**
 * Koa middleware for the login page, and the URL rewrite behind `ignore_max_age`.
 *
 * The login page is a plain HTML form without JavaScript, so an HTTP client
 * with a cookie jar can drive it: GET `{mount}/interaction/{uid}` shows the
 * form, POST `{mount}/interaction/{uid}/login` checks it. Paths seen here have
 * the mount prefix already removed (see server.mjs).
 */

import { timingSafeEqual } from 'node:crypto';

import { amrFor, oktaAcrFor } from './profiles.mjs';

const INTERACTION_PATH = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/;
const MAX_FORM_BYTES = 16 * 1024;

function escapeHtml(text) {
  return String(text)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

function secretsEqual(submitted, expected) {
  const a = Buffer.from(submitted ?? '', 'utf8');
  const b = Buffer.from(expected, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Renders the login form, with the message `error` above it when set. */
export function renderLoginPage({ action, login = '', error, clientId }) {
  const errorHtml = error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : '';
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in</h1>
<p>Development identity provider. Client: ${escapeHtml(clientId)}</p>
${errorHtml}
<form id="login" method="post" action="${escapeHtml(action)}">
  <label>Login <input name="login" type="text" autocomplete="username" value="${escapeHtml(login)}"></label><br>
  <label>Password <input name="password" type="password" autocomplete="current-password"></label><br>
  <label>One-time code (optional) <input name="otp" type="text" inputmode="numeric" autocomplete="one-time-code"></label><br>
  <button type="submit">Sign in</button>
</form>
</body>
</html>
`;
}

async function readForm(ctx) {
  if (!ctx.is('application/x-www-form-urlencoded')) {
    ctx.throw(415, 'login form must be sent as application/x-www-form-urlencoded');
  }

  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) {
      ctx.throw(413, `login form is larger than ${MAX_FORM_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/**
 * Checks the submitted credentials. Returns `{ user, usedOtp }` on success
 * or `{ error }` with a message for the form.
 */
function authenticate(users, form) {
  const login = form.get('login') ?? '';
  const otp = (form.get('otp') ?? '').trim();
  const user = users.find((candidate) => candidate.login === login);

  if (!user || !secretsEqual(form.get('password'), user.password)) {
    return { error: 'Invalid login or password.' };
  }
  if (otp === '') {
    return { user, usedOtp: false };
  }
  // A wrong code is an error and never a silent fallback to password only,
  // so a test cannot mistake a typo for a one-factor login.
  if (user.otp === undefined || !secretsEqual(otp, user.otp)) {
    return { error: 'Invalid one-time code.' };
  }
  return { user, usedOtp: true };
}

function loginResult(profile, user, usedOtp) {
  const login = {
    accountId: user.sub,
    // The session stores amr in both profiles, but the Entra claim table
    // leaves it out of tokens. There it records whether this login included
    // the one-time code, which decides the acrs claim.
    amr: amrFor(usedOtp),
    ts: Math.floor(Date.now() / 1000),
    remember: true,
  };
  if (profile === 'okta') {
    login.acr = oktaAcrFor(usedOtp);
  }
  return { login };
}

/**
 * Returns Koa middleware that serves the login page and handles the form.
 * `log` is the server's structured logger.
 */
export function interactionRoutes({ provider, config, users, mountPath, log }) {
  return async function handleInteraction(ctx, next) {
    const match = INTERACTION_PATH.exec(ctx.path);
    if (!match) {
      await next();
      return;
    }

    const [, uid, loginSuffix] = match;
    let details;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
    } catch (err) {
      const reason = err.error_description ?? err.message;
      log('warn', 'interaction not found', { uid, reason });
      ctx.throw(400, `interaction ${uid} not found or expired (${reason}); start a new authorization request`);
    }
    if (details.uid !== uid) {
      ctx.throw(400, 'interaction id in the URL does not match the interaction cookie');
    }
    if (details.prompt.name !== 'login') {
      // Consent is granted in loadExistingGrant, so only login should reach here.
      ctx.throw(500, `unexpected interaction prompt "${details.prompt.name}"`);
    }

    const page = {
      action: `${mountPath}/interaction/${uid}/login`,
      clientId: details.params.client_id,
    };

    if (!loginSuffix && ctx.method === 'GET') {
      ctx.type = 'html';
      ctx.body = renderLoginPage(page);
      return;
    }
    if (!loginSuffix || ctx.method !== 'POST') {
      ctx.throw(405, `${ctx.method} is not allowed on ${ctx.path}`);
    }

    const form = await readForm(ctx);
    const outcome = authenticate(users, form);
    if (outcome.error) {
      log('warn', 'login failed', { uid, login: form.get('login'), reason: outcome.error });
      ctx.type = 'html';
      ctx.body = renderLoginPage({ ...page, login: form.get('login') ?? '', error: outcome.error });
      return;
    }

    const { user, usedOtp } = outcome;
    log('info', 'login succeeded', { uid, sub: user.sub, otp: usedOtp });
    const returnTo = await provider.interactionResult(
      ctx.req,
      ctx.res,
      loginResult(config.profile, user, usedOtp),
      { mergeWithLastSubmission: false },
    );
    ctx.redirect(returnTo);
    ctx.status = 303;
  };
}

/**
 * Returns the authorization request URL `url` (path and query) without
 * `max_age` and without `login` in `prompt`, imitating an IdP that ignores
 * both. Any other URL is returned unchanged, as the same string.
 *
 * It rewrites the raw URL before Koa parses it, because oidc-provider finds
 * its mount path by comparing the raw URL with the Koa one.
 * NOTE: only query parameters are rewritten. A POSTed authorization request
 * keeps its max_age and prompt.
 */
export function stripMaxAge(url, authorizationPath) {
  const parsed = new URL(url, 'http://localhost');
  if (parsed.pathname !== authorizationPath) {
    return url;
  }

  const { searchParams } = parsed;
  const prompts = (searchParams.get('prompt') ?? '').split(' ').filter((p) => p !== '');
  const keptPrompts = prompts.filter((p) => p !== 'login');
  if (!searchParams.has('max_age') && keptPrompts.length === prompts.length) {
    return url;
  }

  searchParams.delete('max_age');
  if (keptPrompts.length > 0) {
    searchParams.set('prompt', keptPrompts.join(' '));
  } else {
    searchParams.delete('prompt');
  }
  return `${parsed.pathname}${parsed.search}`;
}
