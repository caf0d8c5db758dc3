/** What one invocation of the function came to, by Lambda's rules for its response. */
export type Outcome =
  | { kind: 'ok' }
  | { kind: 'partial'; index: number; count: number }
  | { kind: 'error'; error: { type: string; message: string } };

/**
 * Lambda's rules for a ReportBatchItemFailures response: null, {}, or an
 * empty/null list are success; each failure must carry an `itemIdentifier`
 * that is a sequence number of the batch, else the whole batch failed.
 */
export function checkBatchResponse(response: unknown, records: readonly { seq: string }[]): Outcome {
  const invalid = (message: string): Outcome => ({ kind: 'error', error: { type: 'InvalidBatchItemFailuresResponse', message } });
  if (response === undefined || response === null) return { kind: 'ok' };
  if (typeof response !== 'object' || Array.isArray(response))
    return invalid(`the response must be an object, received ${JSON.stringify(response)}`);
  const list = (response as { batchItemFailures?: unknown }).batchItemFailures;
  if (list === undefined || list === null) return { kind: 'ok' };
  if (!Array.isArray(list)) return invalid('batchItemFailures must be a list');
  if (list.length === 0) return { kind: 'ok' };
  const index = new Map(records.map((r, i) => [r.seq, i]));
  let lowest = Number.POSITIVE_INFINITY;
  for (const f of list) {
    const id = (f as { itemIdentifier?: unknown } | null)?.itemIdentifier;
    if (typeof id !== 'string' || id === '')
      return invalid(`each batchItemFailures entry needs an itemIdentifier, received ${JSON.stringify(f)}`);
    const i = index.get(id);
    if (i === undefined) return invalid(`itemIdentifier ${id} is not a sequence number of this batch`);
    lowest = Math.min(lowest, i);
  }
  return { kind: 'partial', index: lowest, count: list.length };
}
