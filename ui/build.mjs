// Builds the UI into dist/: type-checks with tsc, bundles src/main.tsx
// into one app.js with esbuild, and copies index.html and app.css.
// `node build.mjs --no-typecheck` skips tsc (for a quick rebuild).
import * as esbuild from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

if (!process.argv.includes('--no-typecheck')) {
  // tsc does the type checking only; esbuild strips types without checking.
  try {
    execFileSync(join(here, 'node_modules', '.bin', 'tsc'), ['--noEmit', '-p', join(here, 'tsconfig.json')], {
      stdio: 'inherit',
    });
  } catch {
    console.error('ui: type check failed');
    process.exit(1);
  }
}

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
await esbuild.build({
  entryPoints: [join(here, 'src', 'main.tsx')],
  outfile: join(dist, 'app.js'),
  bundle: true,
  // One classic script, no eval, no chunks: what a strict CSP allows.
  format: 'iife',
  target: ['es2022'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  minify: true,
  sourcemap: false,
  // Keep the bundled packages' licence comments.
  legalComments: 'eof',
  logLevel: 'warning',
});
for (const f of ['index.html', 'app.css']) copyFileSync(join(here, f), join(dist, f));
console.log('ui: built', dist);
