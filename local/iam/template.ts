/**
 * The CloudFormation template of the stack `cdk deploy` would deploy, for the
 * local cloud to take each function's environment and IAM policy from. It is
 * synthesized by running the CDK app itself (bin/app.ts, as the CDK CLI runs
 * it: CDK_OUTDIR and CDK_CONTEXT_JSON) in a child process, without bundling
 * (`aws:cdk:bundling-stacks: []`) and without cdk-nag, and cached under
 * node_modules/.cache by a hash of what the template depends on: lib/, the app,
 * cdk.json, the functions/ modules lib/ reads, and the views. local/ may not
 * import lib/ (docs/architecture.md), hence the child process.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { REPO_ROOT } from '../runtime.ts';

/** A synthesized CloudFormation template (only what the local cloud reads). */
export interface CfnTemplate {
  readonly Resources: Readonly<Record<string, { readonly Type: string; readonly Properties?: Record<string, unknown> }>>;
}

/** Where synthesized templates are kept between starts. */
export const TEMPLATE_CACHE_DIR = join(REPO_ROOT, 'node_modules', '.cache', 'tandem-iam');

/** Files and folders (relative to the repository root) the template is a function of. */
export const TEMPLATE_INPUTS = ['lib', 'bin/app.ts', 'cdk.json', 'functions/resources.ts', 'functions/contract', 'functions/core'] as const;

function filesUnder(path: string): string[] {
  if (!existsSync(path)) return [];
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .sort()
    .flatMap((f) => filesUnder(join(path, f)));
}

/** The cache key: a hash of every input file's path and content, and of the views file's content. */
export function templateHash(viewsFile?: string, root = REPO_ROOT): string {
  const h = createHash('sha256');
  for (const input of TEMPLATE_INPUTS) {
    for (const f of filesUnder(join(root, input))) {
      h.update(relative(root, f)).update('\0').update(readFileSync(f)).update('\0');
    }
  }
  h.update('views\0').update(viewsFile ? readFileSync(resolve(viewsFile)) : 'demo');
  return h.digest('hex').slice(0, 20);
}

export interface SynthOptions {
  /** The views file given to the local cloud (`-c views=` of the app). @default the demo views */
  readonly viewsFile?: string;
  /** @default TEMPLATE_CACHE_DIR */
  readonly cacheDir?: string;
  readonly logger?: { info(message: string): void };
}

export interface SynthesizedTemplate {
  readonly template: CfnTemplate;
  readonly hash: string;
  /** True when it came from the cache. */
  readonly cached: boolean;
  readonly ms: number;
}

/** The deployable stack's template, from the cache or synthesized (a cold synth takes 7-20 s). */
export async function deployedTemplate(opts: SynthOptions = {}): Promise<SynthesizedTemplate> {
  const t0 = Date.now();
  const hash = templateHash(opts.viewsFile);
  const dir = opts.cacheDir ?? TEMPLATE_CACHE_DIR;
  const file = join(dir, `${hash}.template.json`);
  const read = () => ({ template: JSON.parse(readFileSync(file, 'utf8')) as CfnTemplate, hash, cached: true, ms: Date.now() - t0 });
  if (existsSync(file)) return read();
  mkdirSync(dir, { recursive: true });
  // One synthesis at a time for a hash: test files start local clouds in parallel, and a
  // synthesis takes a core for 7-20 s. The others wait for its file (a stale lock is taken over).
  const lock = `${file}.lock`;
  let fd: number | undefined;
  while (fd === undefined) {
    try {
      fd = openSync(lock, 'wx');
    } catch {
      if (existsSync(file)) return read();
      const since = statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? 0;
      if (Date.now() - since > LOCK_STALE_MS) rmSync(lock, { force: true });
      else await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    if (existsSync(file)) return read();
    opts.logger?.info('iam: synthesizing the stack template (cached until lib/ or the views change)');
    const template = await synthesize(opts.viewsFile);
    // Written aside then renamed: a reader never sees half a file.
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(template));
    renameSync(tmp, file);
    return { template, hash, cached: false, ms: Date.now() - t0 };
  } finally {
    closeSync(fd);
    rmSync(lock, { force: true });
  }
}

/** A lock older than this is from a synthesis that died. */
const LOCK_STALE_MS = 180_000;

/** Runs bin/app.ts as the CDK CLI would, with the context of cdk.json, no bundling and no cdk-nag. */
async function synthesize(viewsFile: string | undefined): Promise<CfnTemplate> {
  const outdir = mkdtempSync(join(tmpdir(), 'tandem-synth-'));
  try {
    const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as { context?: Record<string, unknown> };
    const context = {
      ...cdkJson.context,
      'aws:cdk:bundling-stacks': [],
      nag: 'false',
      ...(viewsFile ? { views: resolve(viewsFile) } : {}),
    };
    const env: NodeJS.ProcessEnv = { ...process.env, CDK_OUTDIR: outdir, CDK_CONTEXT_JSON: JSON.stringify(context) };
    // An account or region in the environment would put literal ARNs in the template; the local ones replace the pseudo parameters.
    delete env.CDK_DEFAULT_ACCOUNT;
    delete env.CDK_DEFAULT_REGION;
    const stderr: Buffer[] = [];
    const code = await new Promise<number | null>((ok, fail) => {
      const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bin', 'app.ts')], {
        cwd: REPO_ROOT,
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      child.stderr.on('data', (d: Buffer) => stderr.push(d));
      child.once('error', fail);
      child.once('exit', ok);
    });
    if (code !== 0) {
      throw new Error(
        `synthesizing the stack (bin/app.ts) for the local IAM check failed with code ${code} ` +
          `(TANDEM_IAM=off starts without the check): ${Buffer.concat(stderr).toString().trim()}`,
      );
    }
    const manifest = JSON.parse(readFileSync(join(outdir, 'manifest.json'), 'utf8')) as {
      artifacts: Record<string, { type: string; properties?: { templateFile?: string } }>;
    };
    const stacks = Object.values(manifest.artifacts).filter((a) => a.type === 'aws:cloudformation:stack');
    if (stacks.length !== 1) throw new Error(`the CDK app synthesized ${stacks.length} stacks; the local cloud expects one`);
    return JSON.parse(readFileSync(join(outdir, stacks[0]!.properties!.templateFile!), 'utf8')) as CfnTemplate;
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}
