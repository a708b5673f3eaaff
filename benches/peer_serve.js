#!/usr/bin/env node
// The plain Node peer of `apim-sas serve`: what a user would write instead, with nothing but
// `http` and `crypto`. Same endpoint, same answers: `/verify` (and any path under `/verify/`, any
// method) reads the token from the Authorization header and answers 200 with X-Apim-Gateway-Id,
// X-Apim-Key-Type, X-Apim-Token-Expiry, X-Apim-Token-Format and `Content-Length: 0`, or 401 with
// Azure's ErrorResponse `{"error":{"code","message","target"}}` and
// `WWW-Authenticate: SharedAccessSignature error="<Code>"`. `/healthz` is 200, anything else 404.
//
// Token forms (docs/format.md, "Wire forms"): compact `{id}&{yyyyMMddHHmm}&{sig}` and
// uid `uid={id}&ex={yyyy-MM-ddTHH:mm:ss.fffffffZ}&sn={sig}`, optionally behind `GatewayKey ` or
// `SharedAccessSignature ` (any case, one or more spaces) or in the portal form
// `SharedAccessSignature token="…",refresh="true"`. The signature is base64 HMAC-SHA512 keyed
// with the key's text over `id + "\n" + expiry in .NET's "O" form` (the compact form's minute with
// `:00.0000000Z`). Both keys of a gateway are tried, primary first, compared with
// crypto.timingSafeEqual; then the lifetime: valid while now < expiry + 60 s, refused when the
// expiry is more than 30 days + 60 s ahead.
//
// Written to be fast the ordinary way: keys read once into a Map of Buffers, one regex per field,
// no per-request allocations beyond what http and createHmac make. Single process, as Node runs
// by default.
//
//   node benches/peer_serve.js --keystore ks.json [--listen 127.0.0.1:0] [--header Authorization]
'use strict';

const http = require('http');
const crypto = require('crypto');
const fs = require('fs');

const LEEWAY_MS = 60 * 1000;
const MAX_LIFETIME_MS = 30 * 86400 * 1000;

function parseArgs(argv) {
  const opts = { keystore: null, listen: '127.0.0.1:8089', header: 'authorization' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--keystore') opts.keystore = v;
    else if (a === '--listen') opts.listen = v;
    else if (a === '--header') opts.header = v.toLowerCase();
    else {
      process.stderr.write(`unknown argument ${a}\n`);
      process.exit(2);
    }
    i++;
  }
  if (!opts.keystore) {
    process.stderr.write('usage: peer_serve.js --keystore PATH [--listen ADDR:PORT] [--header NAME]\n');
    process.exit(2);
  }
  return opts;
}

// gateway id -> [[keyType, key bytes], ...], primary first
function loadKeystore(path) {
  const raw = JSON.parse(fs.readFileSync(path, 'utf8'));
  const store = new Map();
  for (const [id, keys] of Object.entries(raw)) {
    const list = [];
    for (const kt of ['primary', 'secondary']) {
      if (typeof keys[kt] === 'string' && keys[kt] !== '') list.push([kt, Buffer.from(keys[kt], 'utf8')]);
    }
    store.set(id, list);
  }
  return store;
}

const SCHEME = /^(?:gatewaykey|sharedaccesssignature) +/i;
const PORTAL = /^sharedaccesssignature +token="([^"]*)"(?:,refresh="(?:true|false)")?$/i;
const BAD_CHAR = /[\x00-\x20\x7f-\uffff]/;
const ID = /^[\x21-\x25\x27-\x7e]{1,80}$/;
const COMPACT_EXPIRY = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})$/;
const UID_EXPIRY = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{7})Z$/;
const SIGNATURE = /^[A-Za-z0-9+/]{85}[AQgw]==$/; // 88 chars, 64 bytes, canonical last character

function refuse(code, target, message) {
  return { code, target, message };
}

// Milliseconds since the epoch of a real calendar instant, or NaN.
function instant(y, mo, d, h, mi, s) {
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) return NaN;
  const t = Date.UTC(y, mo - 1, d, h, mi, s);
  const back = new Date(t);
  if (back.getUTCDate() !== d || back.getUTCMonth() !== mo - 1) return NaN; // Feb 30, …
  return y < 100 ? NaN : t; // Date.UTC maps years 0–99 to 1900–1999; no token lives there
}

function verify(store, header) {
  if (header === undefined || header === '') return refuse('EmptyToken', 'token', 'the token is empty');
  if (header.length > 1024) return refuse('TokenTooLong', 'token', `the token is ${header.length} bytes, over 1024`);
  let token = header;
  const portal = PORTAL.exec(token);
  if (portal !== null) token = portal[1];
  else {
    const scheme = SCHEME.exec(token);
    if (scheme !== null) token = token.slice(scheme[0].length);
  }
  if (token === '') return refuse('EmptyToken', 'token', 'the token is empty');
  if (BAD_CHAR.test(token)) return refuse('MalformedToken', 'token', 'the token holds whitespace or a control character');
  const parts = token.split('&');
  if (parts.length !== 3) return refuse('MalformedToken', 'token', `the token has ${parts.length} fields, not 3`);

  let id, signed, expiryMs, expiryText, format, sig;
  if (parts[0].startsWith('uid=')) {
    if (!parts[1].startsWith('ex=') || !parts[2].startsWith('sn=')) {
      return refuse('MalformedToken', 'token', 'a uid token is uid=…&ex=…&sn=…');
    }
    id = parts[0].slice(4);
    signed = parts[1].slice(3);
    sig = parts[2].slice(3);
    format = 'uid';
    if (!ID.test(id)) return refuse('InvalidGatewayId', 'id', `invalid gateway id '${id}'`);
    const m = UID_EXPIRY.exec(signed);
    const ms = m === null ? NaN : instant(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6]);
    if (Number.isNaN(ms)) return refuse('MalformedExpiry', 'expiry', `invalid expiry '${signed}'`);
    expiryMs = ms + Number(m[7]) / 10000;
    expiryText = m[7] === '0000000' ? `${signed.slice(0, 19)}Z` : signed;
  } else {
    id = parts[0];
    sig = parts[2];
    format = 'compact';
    if (!ID.test(id)) return refuse('InvalidGatewayId', 'id', `invalid gateway id '${id}'`);
    const m = COMPACT_EXPIRY.exec(parts[1]);
    const ms = m === null ? NaN : instant(+m[1], +m[2], +m[3], +m[4], +m[5], 0);
    if (Number.isNaN(ms)) return refuse('MalformedExpiry', 'expiry', `invalid expiry '${parts[1]}'`);
    expiryMs = ms;
    expiryText = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:00Z`;
    signed = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:00.0000000Z`;
  }
  if (!SIGNATURE.test(sig)) return refuse('MalformedSignature', 'signature', 'the signature is not 88 characters of standard base64');
  const mac = Buffer.from(sig, 'base64');

  const keys = store.get(id);
  if (keys === undefined) return refuse('GatewayNotExist', 'id', `no key for gateway '${id}'`);
  const message = `${id}\n${signed}`;
  let keyType = null;
  for (const [kt, key] of keys) {
    const expected = crypto.createHmac('sha512', key).update(message).digest();
    if (crypto.timingSafeEqual(expected, mac)) {
      keyType = kt;
      break;
    }
  }
  if (keyType === null) return refuse('SignatureMismatch', 'signature', `no key of gateway '${id}' produces this signature`);

  const now = Date.now();
  if (now >= expiryMs + LEEWAY_MS) return refuse('TokenExpired', 'expiry', `the token expired at ${expiryText}`);
  if (expiryMs - now > MAX_LIFETIME_MS + LEEWAY_MS) return refuse('ExpiryTooFar', 'expiry', `the expiry ${expiryText} is too far ahead`);
  return { id, keyType, expiryText, format };
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const store = loadKeystore(opts.keystore);
  const colon = opts.listen.lastIndexOf(':');
  const host = opts.listen.slice(0, colon);
  const port = Number(opts.listen.slice(colon + 1));

  const server = http.createServer((req, res) => {
    const q = req.url.indexOf('?');
    const path = q === -1 ? req.url : req.url.slice(0, q);
    if (path === '/verify' || path.startsWith('/verify/')) {
      const r = verify(store, req.headers[opts.header]);
      if (r.code === undefined) {
        res.writeHead(200, {
          'X-Apim-Gateway-Id': r.id,
          'X-Apim-Key-Type': r.keyType,
          'X-Apim-Token-Expiry': r.expiryText,
          'X-Apim-Token-Format': r.format,
          'Content-Length': '0',
        });
        res.end();
      } else {
        const body = JSON.stringify({ error: { code: r.code, message: r.message, target: r.target } });
        res.writeHead(401, {
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(body),
          'WWW-Authenticate': `SharedAccessSignature error="${r.code}"`,
        });
        res.end(body);
      }
    } else if (path === '/healthz' && req.method === 'GET') {
      res.writeHead(200, { 'Content-Length': '0' });
      res.end();
    } else {
      res.writeHead(404, { 'Content-Length': '0' });
      res.end();
    }
  });
  // nginx keeps upstream connections for 60 s (keepalive_timeout); Node's default of 5 s would
  // close them under nginx's feet. Outlive it, as nginx's docs advise for keepalive upstreams.
  server.keepAliveTimeout = 65 * 1000;
  server.headersTimeout = 66 * 1000;
  server.listen(port, host, () => {
    const a = server.address();
    process.stderr.write(`listening on http://${a.address}:${a.port}\n`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
