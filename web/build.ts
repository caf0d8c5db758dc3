/**
 * Bundles the dashboard into web/dist (index.html, assets/app.js, assets/app.css)
 * with esbuild: uPlot included, nothing fetched at run time. `tsx web/build.ts`;
 * `--watch` rebuilds on change.
 */
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const web = dirname(fileURLToPath(import.meta.url));
const dist = join(web, 'dist');

export const buildOptions: esbuild.BuildOptions = {
  entryPoints: [
    { in: join(web, 'src', 'main.ts'), out: 'app' },
    { in: join(web, 'style.css'), out: 'app' },
  ],
  outdir: join(dist, 'assets'),
  bundle: true,
  format: 'esm',
  target: ['chrome100', 'firefox100', 'safari15'],
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'warning',
};

/** Builds web/dist from scratch; returns the output files' paths. */
export async function buildDashboard(): Promise<string[]> {
  rmSync(dist, { recursive: true, force: true });
  mkdirSync(join(dist, 'assets'), { recursive: true });
  const result = await esbuild.build({ ...buildOptions, metafile: true });
  copyFileSync(join(web, 'index.html'), join(dist, 'index.html'));
  return [join(dist, 'index.html'), ...Object.keys(result.metafile?.outputs ?? {})];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv.includes('--watch')) {
    mkdirSync(join(dist, 'assets'), { recursive: true });
    copyFileSync(join(web, 'index.html'), join(dist, 'index.html'));
    const ctx = await esbuild.context({ ...buildOptions, logLevel: 'info' });
    await ctx.watch();
    process.stderr.write('web: watching web/src for changes (Ctrl-C to stop)\n');
  } else {
    const files = await buildDashboard();
    process.stderr.write(`web: built ${files.length} files into web/dist\n`);
  }
}
