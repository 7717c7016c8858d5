#!/usr/bin/env bash
# Rebuild the web page's vendored JavaScript assets from the npm registry (build time only;
# the page never fetches anything from the network at run time).
#
#   bash web/build.sh        # npm ci from package-lock.json, then copy into the package
#
# Copies into src/fervid/serve/static/vendor/ (committed, so `pip install` works offline):
#   onnxruntime-web: ort.wasm.min.mjs (the WASM-only build) and its threaded SIMD runtime
#                    ort-wasm-simd-threaded.{mjs,wasm}
#   swagger-ui-dist: the OpenAPI docs page at /docs (served locally instead of from a CDN)
# with each package's licence. The large files (over 100 kB: the WebAssembly runtime, the Swagger
# UI bundle and stylesheet) are stored as NAME.gz only (gzip -9, no name or time in the header:
# the same bytes on every rebuild), 4 MB in the wheel instead of 16; precompressed.json records
# each original's sha256 and size (tests/test_serve_files.py checks the .gz against them).
# fervid serve sends the .gz with Content-Encoding: gzip, or decompressed to a client that does
# not accept gzip (src/fervid/serve/files.py).
set -euo pipefail
cd "$(dirname "$0")"
command -v npm >/dev/null || { echo "web/build.sh: npm not found (apt-get install npm)" >&2; exit 1; }
npm ci --no-audit --no-fund --ignore-scripts
VENDOR=../src/fervid/serve/static/vendor
rm -rf "$VENDOR"
mkdir -p "$VENDOR/onnxruntime-web" "$VENDOR/swagger-ui"
ORT=node_modules/onnxruntime-web
for f in ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm; do
  cp "$ORT/dist/$f" "$VENDOR/onnxruntime-web/"
done
# The npm package carries no licence file; its package.json says MIT (Microsoft Corporation).
cat > "$VENDOR/onnxruntime-web/LICENSE" <<'TXT'
onnxruntime-web (https://www.npmjs.com/package/onnxruntime-web), licence: MIT

MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
TXT
SW=node_modules/swagger-ui-dist
cp "$SW/swagger-ui-bundle.js" "$SW/swagger-ui.css" "$SW/favicon-32x32.png" "$SW/LICENSE" "$VENDOR/swagger-ui/"
node - "$VENDOR" <<'JS'
// Compress the large text and WebAssembly files in place (NAME -> NAME.gz) and record the originals.
const fs = require("fs"), path = require("path"), zlib = require("zlib"), crypto = require("crypto");
const vendor = process.argv[2], manifest = {};
for (const dir of fs.readdirSync(vendor).sort()) {
  const folder = path.join(vendor, dir);
  if (!fs.statSync(folder).isDirectory()) continue;
  for (const name of fs.readdirSync(folder).sort()) {
    const file = path.join(folder, name);
    const data = fs.readFileSync(file);
    if (data.length <= 100 * 1024 || !/\.(wasm|js|mjs|css)$/.test(name)) continue;
    fs.writeFileSync(file + ".gz", zlib.gzipSync(data, { level: 9 }));
    fs.unlinkSync(file);
    manifest[dir + "/" + name] = { sha256: crypto.createHash("sha256").update(data).digest("hex"), size: data.length };
  }
}
fs.writeFileSync(path.join(vendor, "precompressed.json"), JSON.stringify(manifest, null, 2) + "\n");
JS
node -e "for (const p of ['onnxruntime-web','swagger-ui-dist']) { const j=require('./node_modules/'+p+'/package.json'); console.log(p, j.version, j.license); }" \
  > "$VENDOR/VERSIONS.txt"
du -sh "$VENDOR"
cat "$VENDOR/VERSIONS.txt"
