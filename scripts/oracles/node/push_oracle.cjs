// Independent Web Push counterpart for the Rust tests, built on `web-push` (VAPID keys) and
// `http_ece` (RFC 8188/8291 decryption) plus node's own crypto (ES256 verification).
// JSON on stdin, JSON on stdout:
//   {"op":"keys"} → {"vapid":{"publicKey","privateKey"},"subscriber":{"p256dh","auth","privateKey"}}
//   {"op":"open","body":b64,"privateKey","p256dh","auth","authorization","audience"}
//     → {"plaintext": utf8, "vapid": {"valid": bool, "k": str, "claims": {...}}}
const crypto = require("crypto");
const ece = require("http_ece");
const webpush = require("web-push");

const b64u = (buf) => Buffer.from(buf).toString("base64url");

function keys() {
  const vapid = webpush.generateVAPIDKeys();
  const ecdh = crypto.createECDH("prime256v1");
  ecdh.generateKeys();
  return {
    vapid,
    subscriber: {
      p256dh: b64u(ecdh.getPublicKey()),
      privateKey: b64u(ecdh.getPrivateKey()),
      auth: b64u(crypto.randomBytes(16)),
    },
  };
}

function verifyVapid(authorization, audience) {
  const m = /^vapid t=([^,]+),\s*k=(.+)$/.exec(authorization || "");
  if (!m) return { valid: false, reason: "not a vapid header" };
  const [jwt, k] = [m[1], m[2].trim()];
  const [h, c, s] = jwt.split(".");
  const header = JSON.parse(Buffer.from(h, "base64url"));
  const claims = JSON.parse(Buffer.from(c, "base64url"));
  const point = Buffer.from(k, "base64url");
  const key = crypto.createPublicKey({
    key: { kty: "EC", crv: "P-256", x: b64u(point.subarray(1, 33)), y: b64u(point.subarray(33, 65)) },
    format: "jwk",
  });
  const sigOk = crypto.verify(
    "sha256",
    Buffer.from(`${h}.${c}`),
    { key, dsaEncoding: "ieee-p1363" },
    Buffer.from(s, "base64url")
  );
  const now = Math.floor(Date.now() / 1000);
  const valid =
    sigOk &&
    header.alg === "ES256" &&
    claims.aud === audience &&
    claims.exp > now &&
    claims.exp <= now + 24 * 3600 &&
    typeof claims.sub === "string";
  return { valid, k, claims };
}

function open(input) {
  const ecdh = crypto.createECDH("prime256v1");
  ecdh.setPrivateKey(Buffer.from(input.privateKey, "base64url"));
  const plaintext = ece.decrypt(Buffer.from(input.body, "base64"), {
    version: "aes128gcm",
    privateKey: ecdh,
    authSecret: input.auth,
  });
  return { plaintext: plaintext.toString("utf8"), vapid: verifyVapid(input.authorization, input.audience) };
}

const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = input.op === "keys" ? keys() : open(input);
process.stdout.write(JSON.stringify(out));
