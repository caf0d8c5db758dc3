/**
 * The template cache of the local IAM check (local/iam/template.ts): the key
 * changes with what the template depends on and nothing else, and a cached
 * template is read without synthesizing.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { deployedTemplate, templateHash } from '../../local/iam/template.ts';

const root = mkdtempSync(join(tmpdir(), 'tandem-iam-hash-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const write = (path: string, text: string) => {
  mkdirSync(join(root, path, '..'), { recursive: true });
  writeFileSync(join(root, path), text);
};

describe('templateHash', () => {
  it('changes with lib/, the app, the functions/ modules lib/ reads and the views; not with handlers or local/', () => {
    write('lib/tandem.ts', 'a');
    write('functions/core/views.ts', 'v');
    write('functions/speed.ts', 's');
    write('local/cloud.ts', 'c');
    write('views.json', '[1]');
    const base = templateHash(undefined, root);
    expect(templateHash(undefined, root)).toBe(base);
    write('functions/speed.ts', 's2');
    write('local/cloud.ts', 'c2');
    expect(templateHash(undefined, root)).toBe(base);
    const withViews = templateHash(join(root, 'views.json'), root);
    expect(withViews).not.toBe(base);
    write('views.json', '[2]');
    expect(templateHash(join(root, 'views.json'), root)).not.toBe(withViews);
    write('lib/tandem.ts', 'b');
    expect(templateHash(undefined, root)).not.toBe(base);
    write('lib/tandem.ts', 'a');
    write('functions/core/views.ts', 'v2');
    expect(templateHash(undefined, root)).not.toBe(base);
  });
});

describe('deployedTemplate', () => {
  it('reads the cached template of the current hash without synthesizing', async () => {
    const cacheDir = join(root, 'cache');
    mkdirSync(cacheDir, { recursive: true });
    const template = { Resources: { X: { Type: 'AWS::S3::Bucket' } } };
    writeFileSync(join(cacheDir, `${templateHash()}.template.json`), JSON.stringify(template));
    const got = await deployedTemplate({ cacheDir });
    expect(got).toMatchObject({ template, hash: templateHash(), cached: true });
  });
});
