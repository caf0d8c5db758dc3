/** GET /health: 200 `{"status":"ok"}` while the API answers (no key needed, no store touched). */
import { Logger } from '@aws-lambda-powertools/logger';
import { type ApiHandler, guarded, json } from './api/http.ts';

const logger = new Logger({ serviceName: 'tandem-health' });

export const handler: ApiHandler = guarded(logger, async () => json(200, { status: 'ok' }));
