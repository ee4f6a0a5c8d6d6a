// Builds web/dist: a directory that `vncedge --web web/dist` serves as is. It holds our pages and
// noVNC's core modules with its vendored pako, laid out as the core's relative imports expect
// (core/inflator.js imports ../vendor/pako/...). No bundler: browsers load the ES modules directly.
//
// Usage (after `npm ci --prefix web`): node web/build.mjs [outdir]
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] || join(here, 'dist'));
const novnc = join(here, 'node_modules', '@novnc', 'novnc');

if (!existsSync(join(novnc, 'core', 'rfb.js'))) {
    console.error(`build: ${novnc}/core/rfb.js is missing; run "npm ci --prefix web" first`);
    process.exit(1);
}
const { version } = JSON.parse(readFileSync(join(novnc, 'package.json'), 'utf8'));

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const f of ['vnc.html', 'app.js', 'reconnect.js', 'index.html']) {
    cpSync(join(here, f), join(out, f));
}
cpSync(join(novnc, 'core'), join(out, 'core'), { recursive: true });
cpSync(join(novnc, 'vendor'), join(out, 'vendor'), { recursive: true });
cpSync(join(novnc, 'LICENSE.txt'), join(out, 'core', 'LICENSE.txt'));
writeFileSync(join(out, 'NOVNC_VERSION'), version + '\n');
console.log(`build: ${out} (noVNC core ${version})`);
