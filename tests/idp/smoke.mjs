#!/usr/bin/env node
/**
 * End-to-end smoke test of the development IdP, driven like a browser.
 *
 * For each profile it starts server.mjs on a free loopback port and reads
 * discovery. It runs authorization code flows with PKCE through the HTML
 * login form, using a cookie jar and manual redirects. Each code is redeemed
 * at the token endpoint, and the ID token signature is verified against the
 * JWKS before the claims are printed. It also checks session reuse,
 * prompt=login, max_age, both client authentication methods and the
 * ignore_max_age setting.
 *
 * Usage: node smoke.mjs   (exits non-zero on the first failed check)
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import { createRemoteJWKSet, jwtVerify } from 'jose';

const SERVER = fileURLToPath(new URL('./server.mjs', import.meta.url));
const TENANT = '00000000-0000-0000-0000-000000000001';
// The client's redirect URI. The simulated browser stops there without fetching it.
const REDIRECT_URI = 'http://127.0.0.1:8080/auth/callback';
const CLIENTS = {
  basic: {
    client_id: 'stepup',
    client_secret: 's3cr3t',
    redirect_uris: [REDIRECT_URI],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  post: {
    client_id: 'stepup-post',
    client_secret: 'p0st-s3cr3t',
    redirect_uris: [REDIRECT_URI],
    token_endpoint_auth_method: 'client_secret_post',
  },
};
const USERS = [
  {
    login: 'alice@example.com',
    password: 'alice-password',
    otp: '123456',
    sub: '00u1alice',
    oid: '11111111-1111-1111-1111-111111111111',
    email: 'alice@example.com',
    email_verified: true,
    name: 'Alice',
  },
  {
    login: 'bob@example.com',
    password: 'bob-password',
    otp: '654321',
    sub: '00u2bob',
    oid: '22222222-2222-2222-2222-222222222222',
    email: 'bob@example.com',
    email_verified: false,
    name: 'Bob',
    contexts: ['c1', 'c2'],
  },
];
const [ALICE, BOB] = USERS;

/** Minimal cookie jar for one loopback host. It honours only Path and deletion. */
class CookieJar {
  #cookies = new Map();

  store(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';').map((part) => part.trim());
      const separator = pair.indexOf('=');
      const name = pair.slice(0, separator);
      const value = pair.slice(separator + 1);
      const attribute = (key) => attributes
        .find((a) => a.toLowerCase().startsWith(`${key}=`))?.slice(key.length + 1);

      const path = attribute('path') ?? '/';
      const expires = attribute('expires');
      const deleted = attribute('max-age') === '0'
        || (expires !== undefined && Date.parse(expires) <= Date.now());
      if (deleted) {
        this.#cookies.delete(`${name};${path}`);
      } else {
        this.#cookies.set(`${name};${path}`, { name, value, path });
      }
    }
  }

  headerFor(url) {
    const { pathname } = new URL(url);
    return [...this.#cookies.values()]
      .filter(({ path }) => pathname === path || pathname.startsWith(path.endsWith('/') ? path : `${path}/`))
      .map(({ name, value }) => `${name}=${value}`)
      .join('; ');
  }

  names() {
    return [...new Set([...this.#cookies.values()].map(({ name }) => name))].sort();
  }
}

/**
 * Sends a request and follows redirects like a browser, sending cookies
 * from `jar`. Returns `{ callback }` when a redirect targets REDIRECT_URI,
 * or `{ url, html }` for a page.
 */
async function browse(jar, url, init = {}) {
  let current = url;
  let request = init;
  for (let hops = 0; hops < 10; hops += 1) {
    const response = await fetch(current, {
      ...request,
      redirect: 'manual',
      headers: { ...request.headers, cookie: jar.headerFor(current) },
    });
    jar.store(response);

    if (response.status >= 300 && response.status < 400) {
      const location = new URL(response.headers.get('location'), current);
      if (location.href.startsWith(REDIRECT_URI)) {
        return { callback: location };
      }
      current = location.href;
      request = {};
      continue;
    }

    const html = await response.text();
    assert.equal(response.status, 200, `${current} returned ${response.status}: ${html}`);
    return { url: current, html };
  }
  throw new Error(`more than 10 redirects starting at ${url}`);
}

async function submitLogin(jar, page, fields) {
  const match = /<form id="login" method="post" action="([^"]+)">/.exec(page.html);
  assert.ok(match, `no login form on ${page.url}`);
  const action = new URL(match[1].replaceAll('&amp;', '&'), page.url);
  return browse(jar, action.href, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
}

/** Starts server.mjs with a temporary config and waits for its ready line. */
async function startServer(directory, profile, { ignoreMaxAge = false } = {}) {
  const usersFile = join(directory, 'users.json');
  const configFile = join(directory, `${profile}-${ignoreMaxAge}.json`);
  await writeFile(usersFile, JSON.stringify(USERS));
  await writeFile(configFile, JSON.stringify({
    port: 0,
    host: '127.0.0.1',
    profile,
    tenant: TENANT,
    users_file: 'users.json',
    clients: Object.values(CLIENTS),
    ignore_max_age: ignoreMaxAge,
  }));

  const child = spawn(process.execPath, [SERVER, '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  const exited = new Promise((resolve) => { child.once('exit', resolve); });

  const [line] = await Promise.race([
    createInterface({ input: child.stdout })[Symbol.asyncIterator]().next().then((r) => [r.value]),
    exited.then((code) => { throw new Error(`server exited with ${code} before ready:\n${stderr}`); }),
  ]);
  const ready = JSON.parse(line);
  assert.equal(ready.ready, true);

  const discovery = await (await fetch(`${ready.issuer}/.well-known/openid-configuration`)).json();
  const stop = async () => {
    child.kill('SIGTERM');
    const code = await exited;
    assert.equal(code, 0, `server exited with ${code} on SIGTERM:\n${stderr}`);
  };
  return { ...ready, discovery, stop, stderr: () => stderr };
}

/** Starts an authorization request and returns its PKCE, nonce and first result. */
async function authorize(jar, server, client, params = {}) {
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(8).toString('hex');
  const nonce = randomBytes(8).toString('hex');
  const url = new URL(server.discovery.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: REDIRECT_URI,
    scope: 'openid email profile',
    state,
    nonce,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    ...params,
  }).toString();

  return { verifier, state, nonce, result: await browse(jar, url.href) };
}

/** Checks the redirect back to the client and returns the code. */
function callbackCode(server, flow, result) {
  assert.ok(result.callback, `expected a redirect to the client, got a page at ${result.url}`);
  const query = result.callback.searchParams;
  console.log(`  redirect back: ${[...query.keys()].join(', ')}`);
  assert.equal(query.get('state'), flow.state);
  assert.equal(query.get('iss'), server.issuer);
  assert.ok(query.get('code'));
  return query.get('code');
}

/** Redeems `code` with the client's configured authentication method. */
async function redeem(server, client, flow, code) {
  const form = new URLSearchParams({
    grant_type: 'authorization_code',
    code,
    redirect_uri: REDIRECT_URI,
    code_verifier: flow.verifier,
  });
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (client.token_endpoint_auth_method === 'client_secret_basic') {
    const pair = `${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`;
    headers.authorization = `Basic ${Buffer.from(pair).toString('base64')}`;
  } else {
    form.set('client_id', client.client_id);
    form.set('client_secret', client.client_secret);
  }

  const response = await fetch(server.discovery.token_endpoint, { method: 'POST', headers, body: form });
  const body = await response.json();
  assert.equal(response.status, 200, `token endpoint: ${JSON.stringify(body)}`);

  const { payload, protectedHeader } = await jwtVerify(
    body.id_token,
    createRemoteJWKSet(new URL(server.discovery.jwks_uri)),
    { issuer: server.issuer, audience: client.client_id },
  );
  assert.equal(protectedHeader.alg, 'RS256');
  assert.equal(payload.nonce, flow.nonce);
  console.log(`  ID token claims (${client.token_endpoint_auth_method}): ${JSON.stringify(payload)}`);
  return payload;
}

/** Runs a flow that must show the login form, logs in, and returns the ID token claims. */
async function loginFlow(jar, server, client, params, fields) {
  const flow = await authorize(jar, server, client, params);
  assert.ok(flow.result.html, 'expected the login form');
  console.log(`  login form at ${new URL(flow.result.url).pathname}`);
  const submitted = await submitLogin(jar, flow.result, fields);
  return redeem(server, client, flow, callbackCode(server, flow, submitted));
}

/** Runs a flow that must reuse the session without a form, and returns the claims. */
async function silentFlow(jar, server, client, params) {
  const flow = await authorize(jar, server, client, params);
  return redeem(server, client, flow, callbackCode(server, flow, flow.result));
}

function printDiscovery(server) {
  const { discovery } = server;
  console.log(`  issuer: ${discovery.issuer}`);
  for (const key of [
    'acr_values_supported', 'claims_parameter_supported', 'code_challenge_methods_supported',
    'response_types_supported', 'id_token_signing_alg_values_supported',
    'token_endpoint_auth_methods_supported', 'authorization_response_iss_parameter_supported',
  ]) {
    console.log(`  ${key}: ${JSON.stringify(discovery[key])}`);
  }
}

function checkDiscoveryCommon(server) {
  assert.equal(server.discovery.issuer, server.issuer);
  assert.equal(server.discovery.claims_parameter_supported, true);
  assert.deepEqual(server.discovery.code_challenge_methods_supported, ['S256']);
  assert.deepEqual(server.discovery.response_types_supported, ['code']);
}

async function checkOkta(directory) {
  console.log('== profile okta');
  const server = await startServer(directory, 'okta');
  try {
    printDiscovery(server);
    checkDiscoveryCommon(server);
    assert.equal(server.issuer, `http://127.0.0.1:${server.port}`);
    assert.equal(server.discovery.acr_values_supported.length, 6);

    const jar = new CookieJar();
    const client = CLIENTS.basic;
    const stepUp = { acr_values: 'urn:okta:loa:2fa:any' };

    console.log('- request without PKCE is rejected');
    const noPkce = await authorize(jar, server, client, { code_challenge: '', code_challenge_method: '' });
    assert.equal(noPkce.result.callback?.searchParams.get('error'), 'invalid_request');
    console.log(`  error_description: ${noPkce.result.callback.searchParams.get('error_description')}`);

    console.log('- wrong password shows the form again');
    const first = await authorize(jar, server, client, stepUp);
    const rejected = await submitLogin(jar, first.result, { login: ALICE.login, password: 'wrong' });
    assert.match(rejected.html, /Invalid login or password/);
    console.log(`  login form at ${new URL(first.result.url).pathname}`);

    console.log('- wrong one-time code shows the form again');
    const badCode = await submitLogin(jar, rejected, { login: ALICE.login, password: ALICE.password, otp: '000000' });
    assert.match(badCode.html, /Invalid one-time code/);

    console.log('- password and one-time code');
    const submitted = await submitLogin(jar, badCode, { login: ALICE.login, password: ALICE.password, otp: ALICE.otp });
    const twoFactor = await redeem(server, client, first, callbackCode(server, first, submitted));
    assert.equal(twoFactor.acr, 'urn:okta:loa:2fa:any');
    assert.deepEqual(twoFactor.amr, ['pwd', 'otp']);
    assert.equal(twoFactor.sub, ALICE.sub);
    assert.equal(twoFactor.email, ALICE.email);
    assert.equal(twoFactor.email_verified, true);
    assert.equal(twoFactor.preferred_username, ALICE.login);
    assert.ok(Math.abs(twoFactor.auth_time - Date.now() / 1000) < 10);
    console.log(`  cookies in jar: ${jar.names().join(', ')}`);

    console.log('- second request reuses the session');
    const reused = await silentFlow(jar, server, client, {});
    assert.equal(reused.auth_time, twoFactor.auth_time);

    await sleep(1100);
    console.log('- prompt=login forces the form; password only, client_secret_post');
    const onePassword = await loginFlow(jar, server, CLIENTS.post, { prompt: 'login' }, {
      login: ALICE.login, password: ALICE.password,
    });
    assert.equal(onePassword.acr, 'urn:okta:loa:1fa:pwd');
    assert.deepEqual(onePassword.amr, ['pwd']);
    assert.ok(onePassword.auth_time > twoFactor.auth_time);

    console.log('- max_age=0 forces the form');
    const maxAge = await authorize(jar, server, client, { max_age: '0' });
    assert.ok(maxAge.result.html, 'max_age=0 must show the login form');

    console.log('- acr_values=2fa with a 1fa session (oidc-provider default: no new login)');
    const unmet = await silentFlow(jar, server, client, stepUp);
    assert.equal(unmet.acr, 'urn:okta:loa:1fa:pwd');
  } finally {
    await server.stop();
  }
}

async function checkEntra(directory) {
  console.log('== profile entra');
  const server = await startServer(directory, 'entra');
  try {
    printDiscovery(server);
    checkDiscoveryCommon(server);
    assert.equal(server.issuer, `http://127.0.0.1:${server.port}/${TENANT}/v2.0`);
    assert.equal(server.discovery.acr_values_supported, undefined);

    const client = CLIENTS.basic;
    const requestC1 = { claims: JSON.stringify({ id_token: { acrs: { essential: true, value: 'c1' } } }) };
    const jar = new CookieJar();

    console.log('- password and one-time code, acrs c1 requested');
    const stepUp = await loginFlow(jar, server, client, requestC1, {
      login: ALICE.login, password: ALICE.password, otp: ALICE.otp,
    });
    assert.deepEqual(stepUp.acrs, ['c1']);
    assert.equal(stepUp.acr, undefined);
    assert.equal(stepUp.amr, undefined);
    assert.equal(stepUp.tid, TENANT);
    assert.equal(stepUp.oid, ALICE.oid);
    assert.equal(stepUp.preferred_username, ALICE.login);
    assert.ok(stepUp.auth_time);

    console.log('- prompt=login, password only, acrs c1 requested');
    const passwordOnly = await loginFlow(jar, server, client, { ...requestC1, prompt: 'login' }, {
      login: ALICE.login, password: ALICE.password,
    });
    assert.equal(passwordOnly.acrs, undefined);

    console.log('- bob with the one-time code, acrs values c1 c2 c3 requested');
    const bob = await loginFlow(new CookieJar(), server, client, {
      claims: JSON.stringify({ id_token: { acrs: { essential: true, values: ['c1', 'c2', 'c3'] } } }),
    }, { login: BOB.login, password: BOB.password, otp: BOB.otp });
    assert.deepEqual(bob.acrs, ['c1', 'c2']);
    assert.equal(bob.email_verified, false);
  } finally {
    await server.stop();
  }
}

async function checkIgnoreMaxAge(directory) {
  console.log('== profile okta with ignore_max_age');
  const server = await startServer(directory, 'okta', { ignoreMaxAge: true });
  try {
    const jar = new CookieJar();
    const client = CLIENTS.basic;
    const first = await loginFlow(jar, server, client, {}, { login: ALICE.login, password: ALICE.password });

    await sleep(1100);
    console.log('- max_age=0 prompt=login is ignored, so the old auth_time comes back');
    const stale = await silentFlow(jar, server, client, { max_age: '0', prompt: 'login' });
    assert.equal(stale.auth_time, first.auth_time);
    assert.match(server.stderr(), /ignoring max_age and prompt=login/);
  } finally {
    await server.stop();
  }
}

const directory = await mkdtemp(join(tmpdir(), 'stepup-idp-'));
try {
  await checkOkta(directory);
  await checkEntra(directory);
  await checkIgnoreMaxAge(directory);
  console.log('smoke test passed');
} finally {
  await rm(directory, { recursive: true, force: true });
}
