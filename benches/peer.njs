// The njs peer of the nginx module: what an nginx user writes instead of loading
// ngx_http_apim_sas_module, with nothing but nginx's own JavaScript (Debian 12's
// libnginx-mod-http-js, njs 0.7.9) and its WebCrypto. benches/nginx.sh times it; it is also an
// honest example of verifying these tokens in njs.
//
// Token forms (docs/format.md, "Wire forms"), as benches/peer_serve.js: compact
// `{id}&{yyyyMMddHHmm}&{sig}` and uid `uid={id}&ex={yyyy-MM-ddTHH:mm:ss.fffffffZ}&sn={sig}`,
// optionally behind `GatewayKey ` or `SharedAccessSignature ` (any case) or in the portal form
// `SharedAccessSignature token="…",refresh="true"`. The signature is base64 HMAC-SHA512 keyed with
// the key's text over `id + "\n" + expiry in .NET's "O" form`. Both keys of a gateway are tried,
// primary first, with crypto.subtle.verify (a constant-time comparison); then the lifetime: valid
// while now < expiry + 60 s, refused when the expiry is more than 30 days + 60 s ahead.
//
// Why it is written this way (njs 0.7.9's limits, checked on the machine):
// - `require('crypto').createHmac` knows md5, sha1 and sha256 only: "not supported algorithm:
//   sha512". The one SHA-512 HMAC is WebCrypto's `crypto.subtle`, whose calls return promises, so
//   a `js_set` variable (synchronous) cannot verify. The handler is an async `js_content`.
// - Nothing a script makes survives its request: njs 0.7.9 clones a fresh VM for every request
//   and runs the module's top-level code in it again, so a keystore read at top level would be
//   read and parsed on every request, and a CryptoKey imported by one request is gone for the
//   next. The keystore is therefore njs 0.7.8's `js_preload_object keystore from PATH;` (the same
//   file the module and serve read): read and parsed once per configuration by the master (as
//   root, like the module's), an immutable global shared by every request's VM. Each request
//   imports the one key it tries (importKey is cheap next to the VM clone and the promises).
// - No `for…of`, no destructuring in this njs: plain loops.
//
// Two entry points, both in use by benches/nginx.sh:
//   content  `location / { js_content peer.content; }`: verifies, then
//            `r.internalRedirect($peer_next)` (a named location, `@file` by default) that serves
//            the request as if nothing had happened (no subrequest).
//            The identity is left in `js_var` variables $peer_gateway_id, $peer_key_type,
//            $peer_token_expiry, $peer_token_format for what serves the request.
//            A refusal is serve's: 401, `WWW-Authenticate: SharedAccessSignature error="<Code>"`,
//            Azure's ErrorResponse JSON body.
//   auth     `auth_request /_peer; location = /_peer { internal; js_content peer.auth; }`: the
//            shape nginx's own njs examples use for tokens, 200 with X-Apim-* headers for
//            auth_request_set, or 401. The challenge does not reach the client: auth_request
//            copies only headers_out.www_authenticate, which njs 0.7.9's r.headersOut never sets,
//            so the client gets nginx's bare 401.
//
// Needs in nginx.conf: `js_import peer from …/peer.njs; js_preload_object keystore from PATH;`
// and, for `content`, `js_var $peer_next @file;` plus the js_var identity variables it sets.
//
// The keystore, {"<gateway id>": {"primary": "<key>", "secondary": "<key>"}, …}, preloaded.
/* global keystore */

const LEEWAY_MS = 60 * 1000;
const MAX_LIFETIME_MS = 30 * 86400 * 1000;

const SCHEME = /^(?:gatewaykey|sharedaccesssignature) +/i;
const PORTAL = /^sharedaccesssignature +token="([^"]*)"(?:,refresh="(?:true|false)")?$/i;
const BAD_CHAR = /[\x00-\x20\x7f-\uffff]/;
const ID = /^[\x21-\x25\x27-\x7e]{1,80}$/;
const COMPACT_EXPIRY = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})$/;
const UID_EXPIRY = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{7})Z$/;
const SIGNATURE = /^[A-Za-z0-9+/]{85}[AQgw]==$/; // 88 chars, 64 bytes, canonical last character

function refuse(code, target, message) {
  return { code: code, target: target, message: message };
}

// Milliseconds since the epoch of a real calendar instant, or NaN.
function instant(y, mo, d, h, mi, s) {
  if (y < 100 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) return NaN;
  const t = Date.UTC(y, mo - 1, d, h, mi, s);
  const back = new Date(t);
  if (back.getUTCDate() !== d || back.getUTCMonth() !== mo - 1) return NaN; // Feb 30, …
  return t;
}

// The token's fields, or a refusal: everything but the signature and the clock.
function parse(header) {
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

  let id, signed, expiryMs, expiryText, format, sig, m, ms;
  if (parts[0].startsWith('uid=')) {
    if (!parts[1].startsWith('ex=') || !parts[2].startsWith('sn=')) {
      return refuse('MalformedToken', 'token', 'a uid token is uid=…&ex=…&sn=…');
    }
    id = parts[0].slice(4);
    signed = parts[1].slice(3);
    sig = parts[2].slice(3);
    format = 'uid';
    if (!ID.test(id)) return refuse('InvalidGatewayId', 'id', `invalid gateway id '${id}'`);
    m = UID_EXPIRY.exec(signed);
    ms = m === null ? NaN : instant(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6]);
    if (Number.isNaN(ms)) return refuse('MalformedExpiry', 'expiry', `invalid expiry '${signed}'`);
    expiryMs = ms + Number(m[7]) / 10000;
    expiryText = m[7] === '0000000' ? `${signed.slice(0, 19)}Z` : signed;
  } else {
    id = parts[0];
    sig = parts[2];
    format = 'compact';
    if (!ID.test(id)) return refuse('InvalidGatewayId', 'id', `invalid gateway id '${id}'`);
    m = COMPACT_EXPIRY.exec(parts[1]);
    ms = m === null ? NaN : instant(+m[1], +m[2], +m[3], +m[4], +m[5], 0);
    if (Number.isNaN(ms)) return refuse('MalformedExpiry', 'expiry', `invalid expiry '${parts[1]}'`);
    expiryMs = ms;
    expiryText = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:00Z`;
    signed = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:00.0000000Z`;
  }
  if (!SIGNATURE.test(sig)) return refuse('MalformedSignature', 'signature', 'the signature is not 88 characters of standard base64');
  return { id: id, signed: signed, expiryMs: expiryMs, expiryText: expiryText, format: format, sig: sig };
}

// The verdict on the request's Authorization header: {id, keyType, expiryText, format} or a
// refusal {code, target, message}.
async function verify(r) {
  const t = parse(r.headersIn['Authorization']);
  if (t.code !== undefined) return t;

  const pair = Object.prototype.hasOwnProperty.call(keystore, t.id) ? keystore[t.id] : undefined;
  if (pair === undefined) return refuse('GatewayNotExist', 'id', `no key for gateway '${t.id}'`);

  const mac = Buffer.from(t.sig, 'base64');
  const message = Buffer.from(`${t.id}\n${t.signed}`);
  const types = ['primary', 'secondary'];
  let keyType = null;
  for (let i = 0; i < types.length && keyType === null; i++) {
    const text = pair[types[i]];
    if (typeof text !== 'string' || text === '') continue;
    const key = await crypto.subtle.importKey('raw', Buffer.from(text), { name: 'HMAC', hash: 'SHA-512' },
      false, ['verify']);
    if (await crypto.subtle.verify('HMAC', key, mac, message)) keyType = types[i];
  }
  if (keyType === null) return refuse('SignatureMismatch', 'signature', `no key of gateway '${t.id}' produces this signature`);

  const now = Date.now();
  if (now >= t.expiryMs + LEEWAY_MS) return refuse('TokenExpired', 'expiry', `the token expired at ${t.expiryText}`);
  if (t.expiryMs - now > MAX_LIFETIME_MS + LEEWAY_MS) return refuse('ExpiryTooFar', 'expiry', `the expiry ${t.expiryText} is too far ahead`);
  return { id: t.id, keyType: keyType, expiryText: t.expiryText, format: t.format };
}

function challenge(r, v) {
  r.headersOut['WWW-Authenticate'] = `SharedAccessSignature error="${v.code}"`;
  r.log(`apim-sas refused: ${v.code} (${v.target})`);
}

// js_content: verify, then hand the request on to $peer_next (a named location).
async function content(r) {
  let v;
  try {
    v = await verify(r);
  } catch (e) {
    r.error(`apim-sas peer: ${e}`);
    r.return(500);
    return;
  }
  if (v.code !== undefined) {
    challenge(r, v);
    r.headersOut['Content-Type'] = 'application/json';
    r.return(401, JSON.stringify({ error: { code: v.code, message: v.message, target: v.target } }));
    return;
  }
  r.variables.peer_gateway_id = v.id;
  r.variables.peer_key_type = v.keyType;
  r.variables.peer_token_expiry = v.expiryText;
  r.variables.peer_token_format = v.format;
  r.internalRedirect(r.variables.peer_next || '@file');
}

// js_content of an auth_request location: 200 with the identity as headers, or 401.
async function auth(r) {
  let v;
  try {
    v = await verify(r);
  } catch (e) {
    r.error(`apim-sas peer: ${e}`);
    r.return(500);
    return;
  }
  if (v.code !== undefined) {
    challenge(r, v);
    r.return(401);
    return;
  }
  r.headersOut['X-Apim-Gateway-Id'] = v.id;
  r.headersOut['X-Apim-Key-Type'] = v.keyType;
  r.headersOut['X-Apim-Token-Expiry'] = v.expiryText;
  r.headersOut['X-Apim-Token-Format'] = v.format;
  r.return(200);
}

export default { content, auth };
