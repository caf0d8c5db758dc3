/**
 * The one logger shape of the repository. Powertools' Logger fits it (the
 * consumers pass attribute objects as `extra`), and so does `console` (the
 * local cloud passes errors and text): methods, not function properties, so
 * either's wider parameter types are accepted.
 */
export interface LogSink {
  info(message: string, ...extra: unknown[]): void;
  warn(message: string, ...extra: unknown[]): void;
  error(message: string, ...extra: unknown[]): void;
  debug?(message: string, ...extra: unknown[]): void;
}
