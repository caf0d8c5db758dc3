/**
 * The import rules, enforced: the table of docs/architecture.md ("Modules and who
 * imports whom") is the rule book, read here, so the page and the check cannot
 * drift. Every import of every source file under the table's folders is parsed
 * (static `import`/`export ... from`, `import('...')` and `require('...')` with a
 * literal), resolved to a repo path or an npm package, and checked against the row
 * of the folder it is in. A specifier built at run time (the local runtime loading
 * a handler by its entry path) is out of a static check's reach.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, posix, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DOC = 'docs/architecture.md';
const SECTION = 'Modules and who imports whom';
const SOURCE = /\.(ts|js|cjs|mjs)$/;

// ---------------------------------------------------------------------------
// Imports of one source text

interface ImportRef {
  readonly specifier: string;
  readonly line: number;
  /** `import type`, `export type ... from`, `typeof import('...')`: erased from the emitted code. */
  readonly typeOnly: boolean;
}

interface Token {
  readonly kind: 'word' | 'string' | 'template' | 'number' | 'regex' | 'punct';
  readonly value: string;
  readonly line: number;
}

// After these words a `/` starts a regular expression, not a division.
const BEFORE_EXPRESSION = new Set([
  'return',
  'typeof',
  'case',
  'do',
  'else',
  'in',
  'of',
  'new',
  'delete',
  'void',
  'throw',
  'yield',
  'await',
]);

/**
 * Just enough of a JavaScript/TypeScript lexer to tell code from comments,
 * strings, templates and regular expressions, so an import written inside any of
 * those is not taken for one (and a quote inside a regular expression does not
 * swallow the rest of the file).
 */
function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  let depth = 0;
  // Brace depths at which a template's `${` expression closes and its text resumes.
  const templates: number[] = [];
  const push = (kind: Token['kind'], value: string, at: number) => tokens.push({ kind, value, line: at });
  const newlines = (from: number, to: number) => {
    for (let k = from; k < to; k++) if (src[k] === '\n') line++;
  };
  // Reads template text from `from` (just after '`' or the '}' closing an expression) to its end or next `${`.
  const templateText = (from: number): number => {
    let k = from;
    while (k < src.length) {
      const c = src[k];
      if (c === '\\') k += 2;
      else if (c === '`') {
        newlines(from, k);
        return k + 1;
      } else if (c === '$' && src[k + 1] === '{') {
        newlines(from, k);
        templates.push(depth);
        return k + 2;
      } else k++;
    }
    newlines(from, k);
    return k;
  };
  const regexAllowed = () => {
    const prev = tokens[tokens.length - 1];
    if (!prev) return true;
    if (prev.kind === 'word') return BEFORE_EXPRESSION.has(prev.value);
    if (prev.kind === 'punct') return !(prev.value === ')' || prev.value === ']' || prev.value === '}');
    return false;
  };
  while (i < src.length) {
    const c = src[i]!;
    const at = line;
    if (c === '\n') {
      line++;
      i++;
    } else if (/\s/.test(c)) i++;
    else if (c === '/' && src[i + 1] === '/') {
      while (i < src.length && src[i] !== '\n') i++;
    } else if (c === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      const stop = end < 0 ? src.length : end + 2;
      newlines(i, stop);
      i = stop;
    } else if (c === "'" || c === '"') {
      let k = i + 1;
      while (k < src.length && src[k] !== c && src[k] !== '\n') k += src[k] === '\\' ? 2 : 1;
      push('string', src.slice(i + 1, k), at);
      i = k + 1;
    } else if (c === '`') {
      push('template', '', at);
      i = templateText(i + 1);
    } else if (c === '}' && templates.length > 0 && templates[templates.length - 1] === depth) {
      templates.pop();
      i = templateText(i + 1);
    } else if (c === '/' && regexAllowed()) {
      let k = i + 1;
      let inClass = false;
      while (k < src.length && src[k] !== '\n') {
        if (src[k] === '\\') k++;
        else if (src[k] === '[') inClass = true;
        else if (src[k] === ']') inClass = false;
        else if (src[k] === '/' && !inClass) break;
        k++;
      }
      k++;
      while (k < src.length && /[a-z]/i.test(src[k]!)) k++;
      push('regex', src.slice(i, k), at);
      i = k;
    } else if (/[A-Za-z_$]/.test(c)) {
      let k = i + 1;
      while (k < src.length && /[\w$]/.test(src[k]!)) k++;
      push('word', src.slice(i, k), at);
      i = k;
    } else if (/\d/.test(c)) {
      let k = i + 1;
      while (k < src.length && /[\w.]/.test(src[k]!)) k++;
      push('number', src.slice(i, k), at);
      i = k;
    } else {
      if (c === '{') depth++;
      else if (c === '}') depth--;
      push('punct', c, at);
      i++;
    }
  }
  return tokens;
}

/** Every import of a source text, with its line. */
function importsOf(src: string): ImportRef[] {
  const t = tokenize(src);
  const found: ImportRef[] = [];
  // The `from '...'` ending a statement that starts at k, if it has one.
  const fromClause = (k: number): string | undefined => {
    for (let j = k + 1; j < t.length && t[j]!.value !== ';'; j++) {
      if (t[j]!.kind === 'word' && t[j]!.value === 'from' && t[j + 1]?.kind === 'string') return t[j + 1]!.value;
      if (t[j]!.kind === 'word' && (t[j]!.value === 'import' || t[j]!.value === 'export') && t[j - 1]?.value !== '.') return undefined;
    }
    return undefined;
  };
  const literalCall = (k: number): string | undefined =>
    t[k + 1]?.value === '(' && t[k + 2]?.kind === 'string' && t[k + 3]?.value === ')' ? t[k + 2]!.value : undefined;
  for (let k = 0; k < t.length; k++) {
    const tok = t[k]!;
    if (tok.kind !== 'word' || t[k - 1]?.value === '.') continue;
    const next = t[k + 1];
    if (tok.value === 'import' && next) {
      if (next.value === '(') {
        const specifier = literalCall(k);
        if (specifier !== undefined) found.push({ specifier, line: tok.line, typeOnly: t[k - 1]?.value === 'typeof' });
      } else if (next.kind === 'string') found.push({ specifier: next.value, line: tok.line, typeOnly: false });
      else if (next.value !== '.') {
        const specifier = fromClause(k);
        const after = t[k + 2]?.value;
        const typeOnly = next.value === 'type' && after !== 'from' && after !== ',' && after !== '=';
        if (specifier !== undefined) found.push({ specifier, line: tok.line, typeOnly });
      }
    } else if (tok.value === 'export' && next) {
      const typeOnly = next.value === 'type';
      const opening = typeOnly ? t[k + 2]?.value : next.value;
      if (opening === '{' || opening === '*') {
        const specifier = fromClause(k);
        if (specifier !== undefined) found.push({ specifier, line: tok.line, typeOnly });
      }
    } else if (tok.value === 'require') {
      const specifier = literalCall(k);
      if (specifier !== undefined) found.push({ specifier, line: tok.line, typeOnly: false });
    }
  }
  return found;
}

// ---------------------------------------------------------------------------
// The rules: the table of docs/architecture.md

interface Rule {
  /** Repo paths the row is about: a folder (`lib/`), a file, or a glob (`functions/*.ts`). */
  readonly paths: readonly string[];
  /** What may be imported at run time; 'any' for "anything". */
  readonly repo: readonly string[] | 'any';
  /** What may be imported with `import type` only (erased from the emitted code). */
  readonly typeOnly: readonly string[];
  /** npm packages (`node:` = every Node.js builtin); 'any' when the row sets no npm limit. */
  readonly npm: readonly string[] | 'any';
  /** The "may import" cell as written, for messages. */
  readonly text: string;
}

const ticked = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

/**
 * The rows of the "Modules and who imports whom" table. The "may import" cell is
 * `anything`, or `nothing`, or backticked repo paths, then optionally
 * `; type-only: <paths>` and `; npm: <packages> | none`.
 */
function parseRules(markdown: string): Rule[] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l.trim() === `## ${SECTION}`);
  if (start < 0) throw new Error(`${DOC} has no "## ${SECTION}" section`);
  const rows: string[][] = [];
  for (const l of lines.slice(start + 1)) {
    if (l.startsWith('## ')) break;
    if (l.trim().startsWith('|'))
      rows.push(
        l
          .trim()
          .slice(1, -1)
          .split('|')
          .map((c) => c.trim()),
      );
  }
  const [header, separator, ...body] = rows;
  if (header?.join(' | ') !== 'path | what | may import')
    throw new Error(`the table of "${SECTION}" must have the columns path | what | may import`);
  if (!separator?.every((c) => /^:?-+:?$/.test(c))) throw new Error(`the table of "${SECTION}" has no header separator`);
  return body.map((cells) => {
    const [path = '', , may = ''] = cells;
    const parts = may.split(';').map((p) => p.trim());
    const labelled = (label: string) => parts.find((p) => p.startsWith(`${label}:`))?.slice(label.length + 1);
    const first = parts[0] ?? '';
    const npm = labelled('npm');
    const rule: Rule = {
      paths: ticked(path),
      repo: first === 'anything' ? 'any' : ticked(first),
      typeOnly: ticked(labelled('type-only') ?? ''),
      npm: first === 'anything' || npm === undefined ? 'any' : ticked(npm),
      text: may,
    };
    if (rule.paths.length === 0 || (rule.repo !== 'any' && rule.repo.length === 0 && first !== 'nothing'))
      throw new Error(`unreadable row of "${SECTION}": | ${cells.join(' | ')} |`);
    return rule;
  });
}

/** Does a repo path fall under a pattern: a folder (trailing `/`), a glob (`*` within a folder, `**` across), or a file. */
function matches(pattern: string, path: string): boolean {
  if (pattern.endsWith('/')) return path.startsWith(pattern);
  if (!pattern.includes('*')) return path === pattern;
  const source = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*\*|\*/g, (s) => (s === '**' ? '.*' : '[^/]*'));
  return new RegExp(`^${source}$`).test(path);
}

// The most specific row wins: the longest pattern, a file before a glob of the same length.
const specificity = (pattern: string) => pattern.replace(/\*/g, '').length + (pattern.includes('*') || pattern.endsWith('/') ? 0 : 0.5);

function ruleFor(file: string, rules: readonly Rule[]): { rule: Rule; path: string } | undefined {
  let best: { rule: Rule; path: string } | undefined;
  for (const rule of rules)
    for (const p of rule.paths) if (matches(p, file) && (!best || specificity(p) > specificity(best.path))) best = { rule, path: p };
  return best;
}

// ---------------------------------------------------------------------------
// The check

interface Violation {
  readonly file: string;
  readonly line: number;
  readonly specifier: string;
  readonly message: string;
}

const NODE_BUILTINS = new Set(builtinModules);
const packageOf = (spec: string) =>
  spec
    .split('/')
    .slice(0, spec.startsWith('@') ? 2 : 1)
    .join('/');

/** The imports of one file (repo-relative path, its text) that its row of the table does not allow. */
function checkImports(file: string, text: string, rules: readonly Rule[]): Violation[] {
  const found = ruleFor(file, rules);
  if (!found) return [{ file, line: 1, specifier: '', message: `${file} is under no row of the table` }];
  const { rule, path: row } = found;
  const violations: Violation[] = [];
  for (const ref of importsOf(text)) {
    const broken = (why: string) =>
      violations.push({ file, line: ref.line, specifier: ref.specifier, message: `${why} (${row} may import: ${rule.text})` });
    if (ref.specifier.startsWith('.') || ref.specifier.startsWith('/')) {
      const target = posix.normalize(ref.specifier.startsWith('/') ? ref.specifier : posix.join(posix.dirname(file), ref.specifier));
      if (rule.repo === 'any' || rule.repo.some((p) => matches(p, target))) continue;
      if (rule.typeOnly.some((p) => matches(p, target))) {
        if (!ref.typeOnly) broken(`${target} may be imported from ${row} with \`import type\` only`);
        continue;
      }
      broken(`${row} may not import ${target}`);
    } else if (rule.npm !== 'any') {
      const builtin = ref.specifier.startsWith('node:') || NODE_BUILTINS.has(ref.specifier.split('/')[0]!);
      if (builtin ? rule.npm.includes('node:') : rule.npm.includes(packageOf(ref.specifier))) continue;
      broken(`${row} may not import the ${builtin ? 'Node.js builtin' : 'npm package'} ${ref.specifier}`);
    }
  }
  return violations;
}

const formatViolation = (v: Violation) => `${v.file}:${v.line}: '${v.specifier}': ${v.message}`;

// ---------------------------------------------------------------------------
// The repository

const toRepo = (abs: string) => relative(ROOT, abs).split(sep).join('/');

function sourceFiles(path: string): string[] {
  const abs = join(ROOT, path);
  if (!existsSync(abs)) return [];
  if (!statSync(abs).isDirectory()) return SOURCE.test(abs) ? [toRepo(abs)] : [];
  return readdirSync(abs, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && SOURCE.test(e.name))
    .map((e) => toRepo(join(e.parentPath, e.name)));
}

// The folder (or file) a row's pattern is about: the part before any wildcard.
const rootOf = (pattern: string) => (pattern.includes('*') ? pattern.slice(0, pattern.indexOf('*')).replace(/[^/]*$/, '') : pattern);

const rules = parseRules(readFileSync(join(ROOT, DOC), 'utf8'));
const checkedRules = rules.filter((r) => r.repo !== 'any');
const files = [...new Set(checkedRules.flatMap((r) => r.paths.flatMap((p) => sourceFiles(rootOf(p)))))].sort();

describe(`the import rules of ${DOC}`, () => {
  it('are a table this check reads, covering functions/, lib/, local/, bin/ and web/src/', () => {
    expect(rules.length).toBeGreaterThan(8);
    for (const folder of ['functions/', 'lib/', 'local/', 'bin/', 'web/src/'])
      expect(
        checkedRules.some((r) => r.paths.some((p) => rootOf(p) === folder || rootOf(p).startsWith(folder))),
        folder,
      ).toBe(true);
    expect(files.length).toBeGreaterThan(50);
  });

  it('name paths that exist (a typo would silently allow or forbid nothing)', () => {
    const named = rules.flatMap((r) => [...r.paths, ...(r.repo === 'any' ? [] : r.repo), ...r.typeOnly]).map(rootOf);
    expect([...new Set(named)].filter((p) => !existsSync(join(ROOT, p)))).toEqual([]);
  });

  it('hold for every import of every source file', () => {
    const violations = files.flatMap((f) => checkImports(f, readFileSync(join(ROOT, f), 'utf8'), rules));
    expect(violations.map(formatViolation)).toEqual([]);
  });
});

describe('the import check', () => {
  it('catches a wrong-way import (core importing the local cloud)', () => {
    const v = checkImports('functions/core/x.ts', "import { startLocalCloud } from '../../local/cloud.ts';\n", rules);
    expect(v.map(formatViolation)).toEqual([
      expect.stringMatching(/^functions\/core\/x\.ts:1: '\.\.\/\.\.\/local\/cloud\.ts': functions\/core\/ may not import local\/cloud\.ts/),
    ]);
  });

  it('applies each folder its own row', () => {
    const broken = (file: string, text: string) => checkImports(file, text, rules).map((v) => v.line);
    expect(
      broken('functions/core/x.ts', "import { z } from 'zod';\nimport { randomUUID } from 'node:crypto';\nimport { a } from './y.ts';"),
    ).toEqual([]);
    expect(broken('functions/core/x.ts', "import { S3Client } from '@aws-sdk/client-s3';")).toEqual([1]);
    expect(broken('functions/core/x.ts', "import type { Stack } from 'aws-cdk-lib';")).toEqual([1]);
    expect(broken('functions/core/x.ts', "import { X } from '../contract/routes.ts';")).toEqual([1]);
    expect(broken('functions/contract/x.ts', "import { z } from 'zod';\nimport { a } from '../core/views.ts';")).toEqual([]);
    expect(broken('functions/contract/x.ts', "import { Logger } from '@aws-lambda-powertools/logger';")).toEqual([1]);
    expect(broken('functions/resources.ts', "import { a } from './core/views.ts';")).toEqual([1]);
    expect(broken('lib/x.ts', "import { ROUTES } from '../functions/contract/routes.ts';")).toEqual([]);
    expect(broken('lib/x.ts', "import { d } from '../functions/batch/state-machine.ts';")).toEqual([1]);
    expect(broken('lib/x.ts', "import { c } from '../local/cloud.ts';")).toEqual([1]);
    expect(broken('functions/batch/x.ts', "import { k } from '../archive/layout.ts';\nimport { a } from '../archive/archive.ts';")).toEqual(
      [2],
    );
    expect(broken('functions/speed/x.ts', "import { r } from '../api/read-view.ts';")).toEqual([1]);
    expect(broken('functions/x.ts', "import { r } from './api/read-view.ts';\nimport { b } from './batch/steps.ts';")).toEqual([]);
    expect(broken('bin/x.ts', "import { c } from '../local/cloud.ts';\nimport { t } from '../lib/tandem.ts';")).toEqual([]);
    expect(broken('local/x.ts', "import { r } from '../functions/api/read-view.ts';")).toEqual([]);
    expect(broken('local/x.ts', "import { c } from '../bin/client.ts';")).toEqual([1]);
    expect(broken('local/x.ts', "export { c } from '../bin/client.ts';")).toEqual([1]);
    expect(broken('local/x.ts', "const m = await import('../bin/client.ts');")).toEqual([1]);
    expect(broken('local/x.cjs', "const m = require('../lib/index.ts');")).toEqual([1]);
    expect(broken('local/x.ts', "import { t } from '../test/support/speed.ts';")).toEqual([1]);
  });

  it('lets the dashboard import the contract with `import type` only', () => {
    const broken = (text: string) => checkImports('web/src/x.ts', text, rules).map((v) => v.message);
    expect(broken("import type { QueryResponse } from '../../functions/contract/api.ts';")).toEqual([]);
    expect(broken("export type { QueryResponse } from '../../functions/contract/api.ts';")).toEqual([]);
    expect(broken("import { QueryResponse } from '../../functions/contract/api.ts';")).toEqual([
      expect.stringContaining('with `import type` only'),
    ]);
    expect(broken("import { type QueryResponse } from '../../functions/contract/api.ts';")).toHaveLength(1);
    expect(broken("import type { View } from '../../functions/core/views.ts';")).toHaveLength(1);
    expect(broken("import uPlot from 'uplot';\nimport { num } from './format.ts';")).toEqual([]);
    expect(broken("import { readFileSync } from 'node:fs';")).toHaveLength(1);
  });

  it('names a file no row covers', () => {
    expect(checkImports('functions/new-folder-nobody-wrote-down/x.ts', '', rules).map((v) => v.message)).toEqual([
      'functions/new-folder-nobody-wrote-down/x.ts is under no row of the table',
    ]);
  });

  it('finds imports in code only, with their lines and kinds', () => {
    const src = [
      "import { a } from './a.ts';", // 1
      "import type { B } from './b.ts';", // 2
      'import {', // 3
      '  c,', // 4
      "  type D,\n} from './c.ts';", // 5-6
      "import './side-effect.ts';", // 7
      "export * from './e.ts';", // 8
      "export type { F } from './f.ts';", // 9
      "export { g as h } from './g.ts';", // 10
      "const m = await import('./m.ts');", // 11
      "const r = require('./r.cjs');", // 12
      "type T = typeof import('./t.ts');", // 13
      "// import { x } from './comment.ts';", // 14
      "/* import { y } from './block.ts'; */", // 15
      'const s = "import { z } from \'./string.ts\'";', // 16
      'const re = /[\'"]/g; const q = \'import("./quoted.ts")\';', // 17
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the source text of a template, on purpose
      "const tpl = `import ${'x'} from './template.ts' ${`${1}`}`;", // 18
      "const url = new URL('./x', import.meta.url); const p = require.resolve('./resolved.js');", // 19
      "export const from = 'not an import';", // 20
      'export { local };', // 21
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the source text of a template, on purpose
      'const d = await import(`./computed-${1}.ts`);', // 22
      "import x from './after.ts';", // 23
    ].join('\n');
    expect(importsOf(src)).toEqual([
      { specifier: './a.ts', line: 1, typeOnly: false },
      { specifier: './b.ts', line: 2, typeOnly: true },
      { specifier: './c.ts', line: 3, typeOnly: false },
      { specifier: './side-effect.ts', line: 7, typeOnly: false },
      { specifier: './e.ts', line: 8, typeOnly: false },
      { specifier: './f.ts', line: 9, typeOnly: true },
      { specifier: './g.ts', line: 10, typeOnly: false },
      { specifier: './m.ts', line: 11, typeOnly: false },
      { specifier: './r.cjs', line: 12, typeOnly: false },
      { specifier: './t.ts', line: 13, typeOnly: true },
      { specifier: './after.ts', line: 23, typeOnly: false },
    ]);
  });

  it('resolves globs and folders', () => {
    expect(matches('functions/*.ts', 'functions/query.ts')).toBe(true);
    expect(matches('functions/*.ts', 'functions/core/views.ts')).toBe(false);
    expect(matches('functions/**', 'functions/core/views.ts')).toBe(true);
    expect(matches('functions/core/', 'functions/core/views.ts')).toBe(true);
    expect(matches('functions/core/', 'functions/corex/views.ts')).toBe(false);
    expect(ruleFor('functions/resources.ts', rules)?.path).toBe('functions/resources.ts');
    expect(ruleFor('functions/query.ts', rules)?.path).toBe('functions/*.ts');
  });
});
