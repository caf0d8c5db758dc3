import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ViewValidationError } from '../../functions/core/views.ts';
import { loadViewsFile, missingHandlers } from '../../local/cloud.ts';

const dir = mkdtempSync(join(tmpdir(), 'views-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('tandem local --views', () => {
  it('reads a JSON views file through the views schema', async () => {
    const file = join(dir, 'v.json');
    writeFileSync(
      file,
      JSON.stringify({ views: [{ name: 'by_country', dimensions: ['country'], grain: 'hour', metrics: { n: { fn: 'count' } } }] }),
    );
    const views = await loadViewsFile(file);
    expect(views.map((v) => v.name)).toEqual(['by_country']);
  });

  it('names the bad path of an invalid JSON views file', async () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify([{ name: 'x', dimensions: [], grain: 'week', metrics: { n: { fn: 'count' } } }]));
    const err = await loadViewsFile(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ViewValidationError);
    expect((err as Error).message).toMatch(/views\[0\]\.grain/);
  });

  it('imports the default export of a TypeScript views module', async () => {
    const views = await loadViewsFile('test/support/views-module.ts');
    expect(views).toHaveLength(1);
    expect(views[0]).toMatchObject({ name: 'orders_by_plan', grain: 'day', dimensions: ['plan'] });
  });

  it('refuses a missing file or an unknown kind of file, naming it', async () => {
    await expect(loadViewsFile(join(dir, 'none.json'))).rejects.toThrow(/none\.json does not exist/);
    const yaml = join(dir, 'v.yaml');
    writeFileSync(yaml, 'views: []');
    await expect(loadViewsFile(yaml)).rejects.toThrow(/must be \.json, \.ts or \.js/);
  });

  it('every handler the local cloud runs exists (no stubs)', () => {
    expect(missingHandlers()).toEqual([]);
  });
});
