#!/usr/bin/env node
/**
 * Development OpenID provider for the step-up authentication tests.
 *
 * Runs oidc-provider 8 over plain HTTP on a loopback address and imitates
 * either Okta or Microsoft Entra ID (see profiles.mjs). Users log in with a
 * password and, optionally, a static one-time code from the users file.
 * This is a test fixture: it keeps all state in memory, generates a new
 * signing key at every start and must never face real users.
 *
 * Usage: node server.mjs --config /path/config.json
 *
 * When the server listens, stdout receives exactly one JSON line,
 * {"ready":true,"issuer":...,"port":...}. All logs go to stderr as JSON lines.
 */

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

import { ConfigError, loadConfig, loadUsers } from './config.mjs';
import { interactionRoutes, stripMaxAge } from './interactions.mjs';
import { claimSettingsFor, mountPathFor, userClaims } from './profiles.mjs';

// oidc-provider prints notices with console.info, which writes to stdout.
// A test harness reads stdout for the ready line only, so send them to stderr.
console.info = console.error;

const SCOPES = ['openid', 'email', 'profile'];
const AUTHORIZATION_PATH = '/auth';

function log(level, msg, fields = {}) {
  const entry = { time: new Date().toISOString(), level, msg, ...fields };
  process.stderr.write(`${JSON.stringify(entry)}\n`);
}

/** Generates the RSA key that signs ID tokens. The key exists only in memory. */
function generateSigningKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: randomBytes(8).toString('hex'),
    alg: 'RS256',
    use: 'sig',
  };
}

/**
 * Loads or creates the grant for the session's user and the requesting
 * client, and adds the requested scopes and claims to it. Every configured
 * client is trusted, so the consent prompt never appears.
 */
async function loadExistingGrant(ctx) {
  const { oidc } = ctx;
  const clientId = oidc.client.clientId;
  const accountId = oidc.session.accountId;

  const grantId = oidc.session.grantIdFor(clientId);
  let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
  // A different user may have logged in within the same browser session.
  if (!grant || grant.accountId !== accountId) {
    grant = new oidc.provider.Grant({ clientId, accountId });
  }

  grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
  const requestedClaims = [
    ...Object.keys(oidc.claims.id_token ?? {}),
    ...Object.keys(oidc.claims.userinfo ?? {}),
  ];
  if (requestedClaims.length > 0) {
    grant.addOIDCClaims(requestedClaims);
  }
  await grant.save();
  return grant;
}

function renderError(ctx, out, error) {
  log('warn', 'error page shown', { error: out.error, error_description: out.error_description, detail: error.message });
  ctx.type = 'html';
  const text = JSON.stringify(out, null, 2).replaceAll('&', '&amp;').replaceAll('<', '&lt;');
  ctx.body = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Error</title></head><body><h1>Error</h1><pre>${text}</pre></body></html>\n`;
}

/** Builds the oidc-provider configuration object for `config` and `users`. */
function providerConfiguration(config, users) {
  const { claims, acrValues } = claimSettingsFor(config.profile);
  const mountPath = mountPathFor(config);
  const usersBySub = new Map(users.map((user) => [user.sub, user]));

  return {
    acrValues,
    claims,
    scopes: SCOPES,
    responseTypes: ['code'],
    pkce: { methods: ['S256'], required: () => true },
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
    // Without this, oidc-provider moves scope-requested claims such as email
    // from the ID token to the userinfo response.
    conformIdTokenClaims: false,
    clients: config.clients.map((client) => ({
      ...client,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: 'RS256',
    })),
    cookies: {
      keys: [randomBytes(32).toString('base64url')],
      // Browsers reject a SameSite=None cookie without Secure, and plain HTTP
      // cannot set Secure cookies, so the default (None) would leave only
      // oidc-provider's fallback "_session.legacy" cookie. Lax works over
      // HTTP and still rides along on top-level GETs to the authorization
      // endpoint.
      long: { httpOnly: true, sameSite: 'lax' },
    },
    jwks: { keys: [generateSigningKey()] },
    features: {
      devInteractions: { enabled: false },
      claimsParameter: { enabled: true },
    },
    interactions: {
      url: (ctx, interaction) => `${mountPath}/interaction/${interaction.uid}`,
    },
    loadExistingGrant,
    async findAccount(ctx, sub, token) {
      const user = usersBySub.get(sub);
      if (!user) {
        return undefined;
      }
      return {
        accountId: sub,
        claims: (use, scope, requested) => userClaims(config, user, token, requested),
      };
    },
    renderError,
    // Explicit lifetimes (in seconds) keep oidc-provider from printing a
    // notice for each default it uses.
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      Grant: 86400,
      IdToken: 3600,
      Interaction: 600,
      Session: 86400,
    },
  };
}

function logProviderErrors(provider) {
  const events = ['server_error', 'authorization.error', 'grant.error', 'userinfo.error', 'end_session.error'];
  for (const event of events) {
    provider.on(event, (ctx, error) => {
      log('error', event, { error: error.message, error_description: error.error_description, path: ctx.path });
    });
  }
  provider.on('grant.success', (ctx) => {
    log('info', 'tokens issued', { client_id: ctx.oidc.client?.clientId });
  });
}

/**
 * Returns a Node request listener that passes requests under `mountPath` to
 * `handler` with the prefix removed. oidc-provider reads `req.originalUrl`
 * to put the prefix back into the URLs it generates.
 */
function requestListener(handler, mountPath, ignoreMaxAge) {
  return (req, res) => {
    const { url } = req;
    const inMount = mountPath === '' || url === mountPath || url.startsWith(`${mountPath}/`)
      || url.startsWith(`${mountPath}?`);
    if (!inMount) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end(`not found: this provider serves only paths under ${mountPath}\n`);
      return;
    }

    let innerUrl = url.slice(mountPath.length) || '/';
    if (ignoreMaxAge) {
      const stripped = stripMaxAge(innerUrl, AUTHORIZATION_PATH);
      if (stripped !== innerUrl) {
        log('info', 'ignoring max_age and prompt=login', { path: AUTHORIZATION_PATH });
        innerUrl = stripped;
      }
    }
    req.originalUrl = `${mountPath}${innerUrl}`;
    req.url = innerUrl;
    handler(req, res);
  };
}

function listen(server, port, host) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

function stopOnSignals(server) {
  const stop = (signal) => {
    log('info', 'stopping', { signal });
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

async function main() {
  const { values } = parseArgs({ options: { config: { type: 'string' } } });
  if (!values.config) {
    throw new ConfigError('missing --config; usage: node server.mjs --config /path/config.json');
  }
  const config = await loadConfig(values.config);
  const users = await loadUsers(config.usersFile, config.profile);
  const mountPath = mountPathFor(config);

  // The issuer contains the port, so the socket is bound before the
  // provider exists, and requests wait for the handler to be assigned.
  let handler = (req, res) => {
    res.writeHead(503).end();
  };
  const server = createServer((req, res) => handler(req, res));
  const port = await listen(server, config.port, config.host);
  const hostInUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
  const issuer = `http://${hostInUrl}:${port}${mountPath}`;

  const provider = new Provider(issuer, providerConfiguration(config, users));
  provider.use(interactionRoutes({ provider, config, users, mountPath, log }));
  logProviderErrors(provider);
  handler = requestListener(provider.callback(), mountPath, config.ignoreMaxAge);
  stopOnSignals(server);

  log('info', 'listening', {
    issuer, profile: config.profile, users: users.length, ignore_max_age: config.ignoreMaxAge,
  });
  process.stdout.write(`${JSON.stringify({ ready: true, issuer, port })}\n`);
}

main().catch((error) => {
  const message = error instanceof ConfigError ? error.message : error.stack;
  log('error', 'startup failed', { error: message });
  process.exit(1);
});
