/**
 * The telemetry names are deployed contract: alarms, dashboards and log
 * queries match these strings, so a rename must show up here first.
 */
import { describe, expect, it } from 'vitest';
import { HANDLERS } from '../../functions/contract/routes.ts';
import {
  ARCHIVE_METRICS,
  BATCH_METRICS,
  INGEST_METRICS,
  METRIC_SERVICES,
  METRICS_NAMESPACE,
  SERVICE_DIMENSION,
  SERVICE_NAMES,
  SPEED_METRICS,
} from '../../functions/contract/telemetry.ts';

describe('telemetry names', () => {
  it('namespace and service dimension', () => {
    expect(METRICS_NAMESPACE).toBe('Tandem');
    expect(SERVICE_DIMENSION).toBe('service');
    expect(METRIC_SERVICES).toEqual({ ingest: 'ingest', speed: 'speed', archive: 'archive', batchTask: 'batch' });
  });

  it('one service name per handler', () => {
    expect(Object.keys(SERVICE_NAMES).sort()).toEqual(Object.keys(HANDLERS).sort());
    expect(SERVICE_NAMES).toEqual({
      ingest: 'tandem-ingest',
      query: 'tandem-query',
      batchApi: 'tandem-batch-api',
      health: 'tandem-health',
      speed: 'tandem-speed',
      archive: 'tandem-archive',
      batchTask: 'tandem-batch',
      authorizer: 'tandem-authorizer',
    });
  });

  it('metric names', () => {
    expect(Object.values(INGEST_METRICS)).toEqual(['EventsAccepted', 'EventsRejected', 'EventsNotStored', 'PutRecordsResent']);
    expect(Object.values(SPEED_METRICS)).toEqual([
      'RecordsIn',
      'DuplicatesDropped',
      'PoisonRecords',
      'DeltaItemsWritten',
      'DeltaItemsSkipped',
      'ConditionalCheckConflicts',
      'Repairs',
      'DedupRequests',
      'BatchAge',
      'FailedBatches',
    ]);
    expect(Object.values(ARCHIVE_METRICS)).toEqual([
      'RecordsIn',
      'RecordsArchived',
      'ObjectsWritten',
      'BytesWritten',
      'PoisonRecords',
      'BatchAge',
      'FailedBatches',
    ]);
    expect(Object.values(BATCH_METRICS)).toEqual([
      'BatchCutoffAge',
      'BatchViewRows',
      'BatchViewSqlTime',
      'BatchViewLoadTime',
      'BatchRunsFailed',
    ]);
  });
});
