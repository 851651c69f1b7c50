// The identity provider the integration tests meet: panva's oidc-provider (OpenID Certified),
// configured from JSON, serving HTTPS on the port it is given (0 = any) with the certificate
// the test wrote. Prints one JSON line on stdout when it listens: {"port": N, "issuer": "..."}.
// Exits when stdin closes (the test that started it is gone) or on SIGTERM.
//
// Usage: node provider.mjs CONFIG.json     (or the JSON itself in OIDC_PROVIDER_CONFIG)
//
// Config (every key optional unless marked):
// {
//   "cert": "cert.pem", "key": "key.pem",        // required: PEM files for HTTPS
//   "host": "127.0.0.1", "port": 0,
//   "issuer_host": "127.0.0.1",                  // the host name in the issuer URL
//   "issuer_path": "",                           // e.g. "/realms/test"
//   "signing_algs": ["RS256", "ES256", "EdDSA"], // one key of each is made; the first signs ID tokens
//   "conform_id_token_claims": false,            // false: profile/groups claims go in the ID token too
//   "id_token_ttl": 3600,
//   "clients": [{ "client_id": "gatehouse", "client_secret": "s3cret",
//                 "redirect_uris": ["https://..."], "token_endpoint_auth_method": "client_secret_basic",
//                 "grant_types": ["authorization_code", "client_credentials", "refresh_token"],
//                 "response_types": ["code"], "scope": "openid profile groups wiki.read",
//                 "id_token_signed_response_alg": "RS256",
//                 "token_claims": { "groups": ["robots"] } }],   // extra claims of its client_credentials tokens
//   "users": [{ "sub": "u-1", "username": "alice", "password": "pw", "name": "Alice",
//               "email": "alice@example.com", "groups": ["staff"] }],
//   "resources": { "https://api.example": { "audience": "gatehouse", "scope": "wiki.read wiki.write",
//                  "format": "jwt" | "opaque", "alg": "ES256", "ttl": 300 } },
//   "default_resource": "https://api.example"    // used when a request names no resource
// }
//
// The login interaction is a plain HTML form (GET /interaction/:uid; POST
// /interaction/:uid/login with login=...&password=...); consent is given for whatever the client
// asked (a first-party setup), so a test needs only cookies and form posts.
//
// Test-only routes (this provider exists only for tests):
//   POST /__test/rotate   new signing keys (new kids) sign from now on; the old ones stay published
//   POST /__test/retire   publish only the newest keys
//   GET  /__test/stats    {"jwks_requests": n, "introspections": n, "token_requests": n}

import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

// The library's start-up advice (in-memory adapter, runtime version) is noise in test output.
const warn = console.warn.bind(console);
console.warn = (...args) => {
  if (!String(args[0]).startsWith('oidc-provider WARNING')) warn(...args);
};

const { default: Provider, errors } = await import('oidc-provider');

const source = process.argv[2]
  ? readFileSync(process.argv[2], 'utf8')
  : process.env.OIDC_PROVIDER_CONFIG;
if (!source) {
  console.error('usage: node provider.mjs CONFIG.json (or OIDC_PROVIDER_CONFIG)');
  process.exit(2);
}
const config = JSON.parse(source);
const users = config.users ?? [];
const clients = config.clients ?? [];
const resources = config.resources ?? {};
const signingAlgs = config.signing_algs ?? ['RS256', 'ES256', 'EdDSA'];
const stats = { jwks_requests: 0, introspections: 0, token_requests: 0 };

function makeKey(alg) {
  const kid = `${alg.toLowerCase()}-${randomBytes(6).toString('hex')}`;
  let pair;
  if (alg.startsWith('RS') || alg.startsWith('PS')) {
    pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  } else if (alg === 'ES256') {
    pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  } else if (alg === 'ES384') {
    pair = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  } else if (alg === 'EdDSA' || alg === 'Ed25519') {
    pair = generateKeyPairSync('ed25519');
  } else {
    throw new Error(`unsupported signing alg ${alg}`);
  }
  return { ...pair.privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

// Key generations, newest first: the newest signs, every one is published.
let generations = [signingAlgs.map(makeKey)];

function account(sub) {
  return users.find((u) => u.sub === sub);
}

function tokenClaims(ctx, token) {
  if (token.accountId) {
    const user = account(token.accountId);
    if (user) return { preferred_username: user.username, groups: user.groups ?? [] };
  }
  const client = clients.find((c) => c.client_id === token.clientId);
  return client?.token_claims;
}

const cookieKeys = [randomBytes(32).toString('hex')];

function build(issuer) {
  const provider = new Provider(issuer, {
    clients: clients.map(({ token_claims: _ignored, ...client }) => ({
      grant_types: ['authorization_code', 'client_credentials', 'refresh_token'],
      response_types: ['code'],
      ...client,
    })),
    jwks: { keys: generations.flat() },
    cookies: { keys: cookieKeys },
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name', 'groups'],
      email: ['email'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', ...new Set(
      Object.values(resources).flatMap((r) => (r.scope ?? '').split(' ').filter(Boolean)),
    )],
    conformIdTokenClaims: config.conform_id_token_claims ?? false,
    ttl: {
      IdToken: config.id_token_ttl ?? 3600,
      AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 300,
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 300,
    },
    pkce: { required: () => true },
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'],
    },
    features: {
      devInteractions: { enabled: false },
      introspection: { enabled: true },
      revocation: { enabled: true },
      clientCredentials: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf ?? config.default_resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, indicator) => {
          const rs = resources[indicator];
          if (!rs) throw new errors.InvalidTarget();
          return {
            audience: rs.audience ?? indicator,
            scope: rs.scope ?? '',
            accessTokenTTL: rs.ttl ?? 300,
            accessTokenFormat: rs.format ?? 'jwt',
            ...(rs.format === 'opaque' ? {} : { jwt: { sign: { alg: rs.alg ?? signingAlgs[0] } } }),
          };
        },
      },
    },
    extraTokenClaims: async (ctx, token) => tokenClaims(ctx, token),
    findAccount: async (ctx, sub) => {
      const user = account(sub);
      if (!user) return undefined;
      return {
        accountId: sub,
        claims: async () => ({
          sub,
          preferred_username: user.username,
          name: user.name ?? user.username,
          email: user.email,
          groups: user.groups ?? [],
        }),
      };
    },
    // Consent for everything the client asked (first-party clients; the tests drive logins).
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      let grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
      if (!grant) {
        grant = new ctx.oidc.provider.Grant({
          clientId: ctx.oidc.client.clientId,
          accountId: ctx.oidc.session.accountId,
        });
      }
      const scope = ctx.oidc.params.scope;
      if (scope) grant.addOIDCScope(scope);
      const { claims } = ctx.oidc;
      if (claims?.id_token) grant.addOIDCClaims(Object.keys(claims.id_token));
      if (claims?.userinfo) grant.addOIDCClaims(Object.keys(claims.userinfo));
      for (const indicator of Object.keys(ctx.oidc.resourceServers ?? {})) {
        grant.addResourceScope(indicator, resources[indicator]?.scope ?? '');
      }
      if (ctx.oidc.params.resource) {
        const named = Array.isArray(ctx.oidc.params.resource)
          ? ctx.oidc.params.resource : [ctx.oidc.params.resource];
        for (const indicator of named) {
          if (resources[indicator]) grant.addResourceScope(indicator, resources[indicator].scope ?? '');
        }
      } else if (config.default_resource && resources[config.default_resource]) {
        grant.addResourceScope(config.default_resource, resources[config.default_resource].scope ?? '');
      }
      await grant.save();
      return grant;
    },
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  return provider;
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, message) {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Test IdP sign-in</title></head>
<body><h1>Test IdP</h1>${message ? `<p id="error">${escape(message)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Username <input name="login" id="login" autocomplete="username"></label>
<label>Password <input name="password" id="password" type="password"></label>
<button type="submit" id="submit">Sign in</button>
</form></body></html>`;
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

let provider;
let issuer;

async function handle(req, res) {
  const path = new URL(req.url, 'https://x').pathname;
  const base = config.issuer_path ?? '';
  const local = path.startsWith(base) ? path.slice(base.length) : path;
  try {
    if (req.method === 'POST' && local === '/__test/rotate') {
      generations = [signingAlgs.map(makeKey), ...generations];
      provider = build(issuer);
      return send(res, 200, 'application/json', JSON.stringify({ kids: generations[0].map((k) => k.kid) }));
    }
    if (req.method === 'POST' && local === '/__test/retire') {
      generations = [generations[0]];
      provider = build(issuer);
      return send(res, 200, 'application/json', '{}');
    }
    if (req.method === 'GET' && local === '/__test/stats') {
      return send(res, 200, 'application/json', JSON.stringify(stats));
    }
    const interaction = local.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (interaction) {
      const details = await provider.interactionDetails(req, res);
      if (req.method === 'GET' && !interaction[2]) {
        return send(res, 200, 'text/html; charset=utf-8', loginPage(details.uid));
      }
      if (req.method === 'POST' && interaction[2]) {
        const form = await readForm(req);
        const user = users.find((u) => u.username === form.get('login'));
        if (!user || user.password !== form.get('password')) {
          return send(res, 401, 'text/html; charset=utf-8', loginPage(details.uid, 'Invalid username or password.'));
        }
        return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
      }
      return send(res, 405, 'text/plain', 'method not allowed');
    }
    if (local === '/jwks') stats.jwks_requests += 1;
    if (local === '/token/introspection') stats.introspections += 1;
    if (local === '/token') stats.token_requests += 1;
    if (base && path.startsWith(base)) {
      // Mounted under the issuer's path, as express's app.use(path, ...) would.
      req.originalUrl = req.url;
      req.url = req.url.slice(base.length) || '/';
    }
    return provider.callback()(req, res);
  } catch (err) {
    console.error('request failed', err);
    if (!res.headersSent) send(res, 400, 'application/json', JSON.stringify({ error: 'invalid_request', error_description: String(err.message ?? err) }));
  }
}

const server = createServer({
  cert: readFileSync(config.cert),
  key: readFileSync(config.key),
}, (req, res) => { handle(req, res); });

server.listen(config.port ?? 0, config.host ?? '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `https://${config.issuer_host ?? config.host ?? '127.0.0.1'}:${port}${config.issuer_path ?? ''}`;
  provider = build(issuer);
  process.stdout.write(`${JSON.stringify({ port, issuer })}\n`);
});

process.on('SIGTERM', () => process.exit(0));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
