/** Test handler in the callback style the nodejs24.x runtime no longer supports. */
export const handler = (_event: unknown, _context: unknown, callback: (e: Error | null, r?: unknown) => void) => callback(null, 'ok');
