/** Display helpers. Times are shown in UTC everywhere, as the API speaks UTC. */

const pad = (n: number) => String(n).padStart(2, '0');

/** `2025-01-31 14:05` (UTC), with seconds when asked. */
export function utc(ms: number, seconds = false): string {
  const d = new Date(ms);
  const base = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  return seconds ? `${base}:${pad(d.getUTCSeconds())}` : base;
}

/** `14:05:09` (UTC). */
export function clock(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

/**
 * Labels of time-axis ticks (epoch seconds), 24-hour UTC: `14:05`, with the
 * date under the first tick and under midnight; just the date when ticks are
 * a day or more apart.
 */
export function axisTimes(ticks: readonly number[], incrSeconds: number): string[] {
  return ticks.map((t, i) => {
    const d = new Date(t * 1000);
    const date = `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
    if (incrSeconds >= 86_400) return date;
    const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    return i === 0 || (d.getUTCHours() === 0 && d.getUTCMinutes() === 0) ? `${time}\n${date}` : time;
  });
}

/** A duration in words: `45 s`, `3 min 4 s`, `2 h 5 min`, `3 d 4 h`. */
export function age(seconds: number): string {
  const s = Math.max(0, seconds);
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`;
}

/** A metric value: exact as the API sent it (no rounding of money), thousands separated. */
export function num(v: number | null | undefined): string {
  if (v === null || v === undefined) return '–';
  const [int, frac] = String(v).split('.');
  const grouped = (int ?? '').replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return frac === undefined ? grouped : `${grouped}.${frac}`;
}

/** Creates an element with text and attributes. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}
