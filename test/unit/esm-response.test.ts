import { describe, expect, it } from 'vitest';
import { checkBatchResponse } from '../../local/esm.ts';

const records = [{ seq: '10' }, { seq: '11' }, { seq: '12' }];

describe('ReportBatchItemFailures response rules (as Lambda applies them)', () => {
  it('treats null, {}, and an empty or null list as success', () => {
    for (const r of [undefined, null, {}, { batchItemFailures: [] }, { batchItemFailures: null }])
      expect(checkBatchResponse(r, records)).toEqual({ kind: 'ok' });
  });

  it('restarts from the lowest reported sequence number, whatever the order of the list', () => {
    expect(checkBatchResponse({ batchItemFailures: [{ itemIdentifier: '12' }, { itemIdentifier: '11' }] }, records)).toEqual({
      kind: 'partial',
      index: 1,
      count: 2,
    });
    expect(checkBatchResponse({ batchItemFailures: [{ itemIdentifier: '10' }] }, records)).toEqual({ kind: 'partial', index: 0, count: 1 });
  });

  it('fails the whole batch for an invalid response', () => {
    const invalid = [
      'failed',
      42,
      [],
      { batchItemFailures: 'x' },
      { batchItemFailures: [{ ItemIdentifier: '11' }] },
      { batchItemFailures: [{ itemIdentifier: '' }] },
      { batchItemFailures: [{ itemIdentifier: null }] },
      { batchItemFailures: [{ itemIdentifier: '99' }] },
      { batchItemFailures: [null] },
    ];
    for (const r of invalid)
      expect(checkBatchResponse(r, records)).toMatchObject({ kind: 'error', error: { type: 'InvalidBatchItemFailuresResponse' } });
  });
});
