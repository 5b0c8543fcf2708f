// The takeover timeline: every takeover, failover and giveback that
// heartbeat recorded (`cluster.timeline`), each drawn as bars on one time
// axis, grouped under its action_id, so "why did it move and what took the
// time" reads off one picture.

import { duration, time } from './format';
import { Badge } from './ui';

export interface Step {
  name: string;
  pool?: string;
  ms: number;
  ok: boolean;
  detail?: string;
}

export interface Entry {
  kind: string;
  action_id: string;
  started_unix_ms: number;
  epoch: number;
  from: string;
  to: string;
  pools: string[];
  steps: Step[];
  ok: boolean;
}

export interface Placed extends Step {
  /** Start, ms after the entry's start. */
  at: number;
}

/**
 * Places each step on the entry's time axis. Heartbeat records durations
 * only, in order. Steps run one after another, except in a takeover, where
 * each pool's steps after the record (`pool.takeover`, `active`) run at the
 * same time as the other pools' (heartbeat starts them together): a run of
 * such steps gets one lane per pool, and the next step starts when the
 * slowest lane ends.
 */
export function place(e: Entry): { steps: Placed[]; total: number } {
  const out: Placed[] = [];
  const parallel = e.kind === 'takeover';
  let t = 0;
  let i = 0;
  const steps = e.steps ?? [];
  while (i < steps.length) {
    const s = steps[i];
    if (parallel && s.pool && out.some((p) => p.name === 'record')) {
      const lanes = new Map<string, number>();
      while (i < steps.length && steps[i].pool) {
        const p = steps[i];
        const at = lanes.get(p.pool!) ?? t;
        out.push({ ...p, at });
        lanes.set(p.pool!, at + p.ms);
        i++;
      }
      t = Math.max(t, ...lanes.values());
      continue;
    }
    out.push({ ...s, at: t });
    t += s.ms;
    i++;
  }
  return { steps: out, total: t };
}

function stepLabel(s: Step): string {
  return s.pool ? `${s.name} ${s.pool}` : s.name;
}

/** Grid lines for an axis of `total` ms: about five, at round values. */
function ticks(total: number): number[] {
  if (total <= 0) return [0];
  const raw = total / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out = [];
  for (let x = 0; x <= total + 1e-9; x += step) out.push(x);
  return out;
}

export function EntryView(props: { e: Entry }) {
  const { e } = props;
  const { steps, total } = place(e);
  const span = Math.max(total, 1);
  const slowest = steps.reduce((m, s) => (s.ms > m.ms ? s : m), steps[0] ?? { ms: 0, name: '' });
  const pct = (x: number) => `${((x / span) * 100).toFixed(3)}%`;
  return (
    <article class={e.ok ? 'tl-entry' : 'tl-entry failed'} data-action-id={e.action_id} aria-label={`${e.kind} ${e.action_id}`}>
      <header class="tl-head">
        <div>
          <strong class="tl-kind">{e.kind}</strong> {e.from} → {e.to}
          {e.pools?.length ? <> · pools {e.pools.join(', ')}</> : <> · no pools</>}
          {' · '}
          {e.ok ? <Badge tone="ok">ok</Badge> : <Badge tone="bad">failed</Badge>}
        </div>
        <div class="muted">
          {time(e.started_unix_ms)} · total <strong>{duration(total)}</strong> · epoch {e.epoch} · action{' '}
          <code>{e.action_id}</code>
        </div>
        {slowest && slowest.ms > 0 && (
          <div class="muted">
            Longest step: {stepLabel(slowest)} ({duration(slowest.ms)}, {Math.round((slowest.ms / span) * 100)} %)
          </div>
        )}
      </header>
      <div class="tl-axis" aria-hidden="true">
        {ticks(total).map((x) => (
          <span class="tl-tick" style={{ left: pct(x) }} key={x}>
            {duration(x)}
          </span>
        ))}
      </div>
      <div class="tl-body">
        <div class="tl-grid" aria-hidden="true">
          {ticks(total).map((x) => (
            <span style={{ left: pct(x) }} key={x} />
          ))}
        </div>
        <ol class="tl-steps">
          {steps.map((s, i) => (
            <li class={s.ok ? 'tl-step' : 'tl-step failed'} key={i}>
              <span class="tl-label" title={s.detail}>
                {stepLabel(s)}
              </span>
              <span class="tl-track">
                <span
                  class="tl-bar"
                  style={{ left: pct(s.at), width: `max(2px, ${pct(s.ms)})` }}
                  role="img"
                  aria-label={`${stepLabel(s)}: starts at ${duration(s.at)}, takes ${duration(s.ms)}${s.ok ? '' : ', failed'}`}
                />
              </span>
              <span class="tl-ms">
                {duration(s.ms)}
                {!s.ok && <> · failed</>}
              </span>
              {s.detail && <span class="tl-detail">{s.detail}</span>}
            </li>
          ))}
        </ol>
      </div>
    </article>
  );
}

/** Every entry, newest first. */
export function Timeline(props: { entries: Entry[] }) {
  const entries = [...props.entries].reverse();
  if (!entries.length) return <p class="muted">No takeover, failover or giveback recorded on this controller yet.</p>;
  return (
    <div class="timeline">
      {entries.map((e) => (
        <EntryView e={e} key={`${e.action_id}-${e.started_unix_ms}`} />
      ))}
    </div>
  );
}
