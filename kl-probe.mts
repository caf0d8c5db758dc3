import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClients } from './functions/adapters/clients.ts';
import { emulatorEnv, startEmulator } from './local/emulators.ts';
import { createStream, put } from './test/support/kinesis.ts';
const rss = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
for (const mode of process.argv.slice(2)) {
  const opts = mode === 'none' ? {} : { dataDir: mkdtempSync(join(tmpdir(), 'klp-')), persistInterval: mode };
  const k = await startEmulator('kinesis', opts);
  const { kinesis } = createClients(emulatorEnv({ kinesis: k, dynamodb: { endpoint: 'http://127.0.0.1:9' }, s3: { endpoint: 'http://127.0.0.1:9' } }));
  const s = await createStream(kinesis, 1);
  const line: string[] = [];
  const r0 = rss(k.pid);
  for (let b = 0; b < 24; b++) {
    const t = performance.now();
    await put(kinesis, s, Array.from({ length: 500 }, (_, i) => ({ id: `demo-abc-${b}-${i}`, type: 'page_view', ts: new Date().toISOString(), page: '/docs', country: 'DE', user: 'u123', load_ms: 345 })));
    if (b % 4 === 3) line.push(`${(b + 1) * 500}: ${(performance.now() - t).toFixed(0)}ms ${rss(k.pid).toFixed(0)}MB`);
  }
  console.log(`persist=${mode} start ${r0.toFixed(0)}MB | ${line.join(' | ')}`);
  kinesis.destroy();
  await k.stop();
}
