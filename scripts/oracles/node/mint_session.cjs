// Mint session tokens with the real NextAuth v4 (`next-auth/jwt`) and Auth.js v5
// (`@auth/core/jwt`) encoders. JSON on stdin: {"cases":[{"lib":"v4"|"v5","secret":"…",
// "salt":"…"(v5),"maxAge":seconds,"token":{…claims}}]}; JSON on stdout: {"tokens":["…"]}.
// The Rust tests run it with NODE_PATH pointing at $STARPILLAR_CACHE/node/node_modules.
const v4 = require("next-auth/jwt");

async function main() {
  const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
  // ESM ignores NODE_PATH: locate @auth/core's jwt module through it by hand.
  const path = require("path");
  const fs = require("fs");
  const dirs = (process.env.NODE_PATH || "").split(path.delimiter).filter(Boolean);
  const found = dirs.map((d) => path.join(d, "@auth", "core", "jwt.js")).find(fs.existsSync);
  if (!found) throw new Error("@auth/core not found on NODE_PATH");
  const v5 = await import(require("url").pathToFileURL(found).href);
  const tokens = [];
  for (const c of input.cases) {
    if (c.lib === "v4") {
      tokens.push(await v4.encode({ token: c.token, secret: c.secret, maxAge: c.maxAge }));
    } else if (c.lib === "v5") {
      tokens.push(
        await v5.encode({ token: c.token, secret: c.secret, salt: c.salt, maxAge: c.maxAge })
      );
    } else {
      throw new Error(`unknown lib ${c.lib}`);
    }
  }
  process.stdout.write(JSON.stringify({ tokens }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
