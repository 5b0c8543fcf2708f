// Formatting for people: local times, durations, sizes. Never raw epoch ms.

/** A time (ms since the Unix epoch) in the browser's locale and zone. */
export function time(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  return new Date(ms).toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
}

/** A duration: "850 ms", "1.2 s", "3 min 5 s", "2 h 10 min". */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** How long ago, from a time in ms since the epoch. */
export function ago(ms: number | null | undefined, now = Date.now()): string {
  if (ms === null || ms === undefined) return '–';
  return `${duration(Math.max(0, now - ms))} ago`;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Bytes in binary units, one decimal (as duplexctl prints them). */
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  let x = n;
  let u = 0;
  while (x >= 1024 && u + 1 < UNITS.length) {
    x /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${x.toFixed(1)} ${UNITS[u]}`;
}

/** A JSON value as a short cell. */
export function cell(v: unknown): string {
  if (v === null || v === undefined || v === '') return '–';
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (Array.isArray(v)) return v.length ? v.map(cell).join(', ') : '–';
  return JSON.stringify(v);
}

/** The ALUA and ANA names of an access state (targets' mapping). */
export function accessNames(state: string | undefined): { alua: string; ana: string } {
  switch (state) {
    case 'active':
      return { alua: 'Active/Optimized', ana: 'optimized' };
    case 'non_optimized':
      return { alua: 'Active/Non-optimized', ana: 'non-optimized' };
    case 'standby':
      return { alua: 'Standby', ana: 'inaccessible' };
    case 'transitioning':
      return { alua: 'Transitioning', ana: 'change' };
    default:
      return { alua: '–', ana: '–' };
  }
}

/**
 * One member of an event's or a job's data, for people: members named
 * `*_ms` are times (epoch values) or durations, never raw numbers.
 */
export function member(key: string, v: unknown): string {
  if (typeof v === 'number' && key.endsWith('_ms')) return v > 1e12 ? time(v) : duration(v);
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) return JSON.stringify(v);
  return cell(v);
}

/** An object's members as `key=value` pairs. */
export function members(d: unknown): string {
  if (d === null || d === undefined) return '';
  if (typeof d !== 'object' || Array.isArray(d)) return cell(d);
  return Object.entries(d as Record<string, unknown>)
    .map(([k, v]) => `${k}=${member(k, v)}`)
    .join(' ');
}
