/**
 * Loading and validation of the development IdP's config file and users file.
 *
 * Both files are JSON. Relative paths inside the config file are resolved
 * against the directory that contains the config file, so a test can keep
 * both files in one temporary directory.
 */

import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

const PROFILES = new Set(['okta', 'entra']);
const CLIENT_AUTH_METHODS = new Set(['client_secret_basic', 'client_secret_post']);

/** Error for an invalid config or users file. The message names the file and the field. */
export class ConfigError extends Error {}

async function readJson(path, fileKind) {
  let text;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${fileKind} ${path}: ${err.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${fileKind} ${path} is not valid JSON: ${err.message}`);
  }
}

function requireString(object, field, where) {
  const value = object[field];
  if (typeof value !== 'string' || value === '') {
    throw new ConfigError(`${where}: "${field}" is missing or not a non-empty string`);
  }
  return value;
}

function validateClient(client, index) {
  const where = `config clients[${index}]`;
  const method = client.token_endpoint_auth_method ?? 'client_secret_basic';
  if (!CLIENT_AUTH_METHODS.has(method)) {
    throw new ConfigError(
      `${where}: token_endpoint_auth_method "${method}" is not supported, use client_secret_basic or client_secret_post`,
    );
  }
  const redirectUris = client.redirect_uris;
  if (!Array.isArray(redirectUris) || redirectUris.length === 0) {
    throw new ConfigError(`${where}: "redirect_uris" must be a non-empty array of URLs`);
  }

  return {
    client_id: requireString(client, 'client_id', where),
    client_secret: requireString(client, 'client_secret', where),
    redirect_uris: redirectUris,
    token_endpoint_auth_method: method,
  };
}

/**
 * Reads and validates the config file at `path` and fills in defaults.
 * Throws ConfigError on any invalid field.
 */
export async function loadConfig(path) {
  const raw = await readJson(path, 'config file');
  const where = `config file ${path}`;

  const port = raw.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`${where}: "port" must be an integer from 0 to 65535, got ${JSON.stringify(raw.port)}`);
  }

  const profile = requireString(raw, 'profile', where);
  if (!PROFILES.has(profile)) {
    throw new ConfigError(`${where}: "profile" must be "okta" or "entra", got "${profile}"`);
  }

  let tenant;
  if (profile === 'entra') {
    tenant = requireString(raw, 'tenant', where);
    // The tenant becomes a path segment of the issuer URL.
    if (!/^[A-Za-z0-9.-]+$/.test(tenant)) {
      throw new ConfigError(`${where}: "tenant" may contain only letters, digits, "." and "-", got "${tenant}"`);
    }
  }

  if (!Array.isArray(raw.clients) || raw.clients.length === 0) {
    throw new ConfigError(`${where}: "clients" must be a non-empty array`);
  }

  const ignoreMaxAge = raw.ignore_max_age ?? false;
  if (typeof ignoreMaxAge !== 'boolean') {
    throw new ConfigError(`${where}: "ignore_max_age" must be true or false`);
  }

  return {
    port,
    host: raw.host ?? '127.0.0.1',
    profile,
    tenant,
    usersFile: resolve(dirname(path), requireString(raw, 'users_file', where)),
    clients: raw.clients.map(validateClient),
    ignoreMaxAge,
  };
}

function validateUser(user, index, profile) {
  const where = `users file entry ${index}`;
  const contexts = user.contexts ?? ['c1'];
  if (!Array.isArray(contexts) || contexts.some((c) => typeof c !== 'string')) {
    throw new ConfigError(`${where}: "contexts" must be an array of strings such as ["c1"]`);
  }
  if (user.otp !== undefined && typeof user.otp !== 'string') {
    throw new ConfigError(`${where}: "otp" must be a string such as "123456"`);
  }

  return {
    login: requireString(user, 'login', where),
    password: requireString(user, 'password', where),
    otp: user.otp,
    sub: requireString(user, 'sub', where),
    // Entra ID tokens always carry oid, so that profile needs it per user.
    oid: profile === 'entra' ? requireString(user, 'oid', where) : user.oid,
    email: user.email,
    email_verified: user.email_verified ?? false,
    name: user.name,
    contexts,
  };
}

/**
 * Reads the users file and returns the validated users.
 * Throws ConfigError if the file is invalid or two users share a login or sub.
 */
export async function loadUsers(path, profile) {
  const raw = await readJson(path, 'users file');
  if (!Array.isArray(raw) || raw.length === 0) {
    throw new ConfigError(`users file ${path} must contain a non-empty JSON array of users`);
  }

  const users = raw.map((user, index) => validateUser(user, index, profile));
  for (const field of ['login', 'sub']) {
    const seen = new Set();
    for (const user of users) {
      if (seen.has(user[field])) {
        throw new ConfigError(`users file ${path}: duplicate ${field} "${user[field]}"`);
      }
      seen.add(user[field]);
    }
  }
  return users;
}
