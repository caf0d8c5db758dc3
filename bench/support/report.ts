/** Writing a benchmark's section of docs/benchmarks.md. */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const BENCHMARKS_FILE = join(here, '..', '..', 'docs', 'benchmarks.md');

/** Replaces the section `## <name>` (up to the next `## `) with `md`, or appends it. */
export function writeBenchmarkSection(name: string, md: string): void {
  const current = readFileSync(BENCHMARKS_FILE, 'utf8');
  const start = current.indexOf(`\n## ${name}\n`);
  let next: string;
  if (start < 0) next = `${current.trimEnd()}\n\n${md}`;
  else {
    const end = current.indexOf('\n## ', start + 1);
    next = `${current.slice(0, start + 1)}${md}${end < 0 ? '' : current.slice(end)}`;
  }
  writeFileSync(BENCHMARKS_FILE, next);
}

/** A Markdown table: the first column as labels, the others right-aligned. */
export function markdownTable(head: readonly string[], rows: readonly (readonly string[])[]): string[] {
  return [
    `| ${head.join(' | ')} |`,
    `|---|${head
      .slice(1)
      .map(() => '---:')
      .join('|')}|`,
    ...rows.map((r) => `| ${r.map((c) => c.trim() || ' ').join(' | ')} |`),
  ];
}
