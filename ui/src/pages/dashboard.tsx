// The dashboard: both controllers and where they stand, the interconnect
// links and heartbeat disks, each pool's owner and its ALUA/ANA state
// here, and the alerts. Live: each part reloads on its events, and
// cluster.status every 2 s (its ages move on their own).

import { useEffect, useState } from 'preact/hooks';
import { accessNames, bytes, duration, time } from '../format';
import type { DuplexEvent } from '../rpc';
import { Badge, Section, Status, phaseTone, useApp, useQuery } from '../ui';

export interface ClusterStatus {
  controller: string;
  configured: boolean;
  reason?: string | null;
  capabilities?: string[];
  disks?: string[] | null;
  fence_agents?: string[] | null;
  fence_joined?: boolean | null;
  links?: Array<Record<string, number | null>> | null;
  write_latency?: Array<{ last_ms?: number; p99_ms?: number; samples?: number }> | null;
  state?: {
    me: string;
    partner: string;
    phase: string;
    phase_ms: number;
    partner_phase?: string | null;
    epoch?: { counter: number; controller: string };
    link_age_ms?: Array<number | null>;
    write_age_ms?: Array<number | null>;
    partner_slot_age_ms?: Array<number | null>;
    read_errors?: Array<string | null>;
    config_locked?: boolean;
    maintenance?: boolean;
    last_detection_ms?: number | null;
    targets_serving?: boolean | null;
    partner_targets_serving?: boolean | null;
    frontend_up?: boolean | null;
    shelf_readable?: number | null;
    partner_shelf_readable?: number | null;
  } | null;
}

export interface Alert {
  severity?: string;
  pool?: string | null;
  kind?: string;
  message?: string;
}

export interface PoolRow {
  name: string;
  owner?: string | null;
  home?: string | null;
  active_here: boolean;
  visible: boolean;
  recorded: boolean;
  size?: number | null;
  free?: number | null;
  volumes: number;
  epoch?: number | null;
  tier?: string | null;
  layout?: unknown;
  raid?: { state?: string; percent?: number; detail?: string } | null;
  alerts: Alert[];
}

export interface PoolStatus {
  controller: string;
  pools: PoolRow[];
}

export interface AccessStates {
  pools: Record<string, { state?: string; ana_group?: number | null; volumes?: string[] }>;
  overrides: Record<string, unknown>;
}

export const CLUSTER_TOPICS = ['cluster.*', 'alert'];
export const POOL_TOPICS = ['pool.*', 'target.access_state', 'config.changed', 'cluster.takeover_done', 'cluster.giveback_done'];

function flag(v: boolean | null | undefined, yes: string, no: string) {
  if (v === null || v === undefined) return <Badge tone="muted">unknown</Badge>;
  return v ? <Badge tone="ok">{yes}</Badge> : <Badge tone="bad">{no}</Badge>;
}

export function Controllers(props: { st: ClusterStatus }) {
  const { st } = props;
  if (!st.configured) {
    return <p class="notice">Heartbeat is not configured on {st.controller}: {st.reason ?? 'no reason given'}.</p>;
  }
  const s = st.state;
  if (!s) return <p class="muted">No state yet.</p>;
  return (
    <div class="controllers">
      <div class="controller" data-controller={s.me}>
        <h3>
          Controller {s.me} <span class="muted">(this one)</span>
        </h3>
        <p>
          <Badge tone={phaseTone(s.phase)}>{s.phase}</Badge> for {duration(s.phase_ms)}
        </p>
        <p class="muted">Targets serving: {flag(s.targets_serving, 'yes', 'no')}</p>
      </div>
      <div class="controller" data-controller={s.partner}>
        <h3>
          Controller {s.partner} <span class="muted">(partner)</span>
        </h3>
        <p>
          <Badge tone={phaseTone(s.partner_phase)}>{s.partner_phase ?? 'unknown'}</Badge>
        </p>
        <p class="muted">Targets serving: {flag(s.partner_targets_serving, 'yes', 'no')}</p>
      </div>
      <dl class="facts">
        <dt>Epoch</dt>
        <dd>
          {s.epoch?.counter ?? '–'} <span class="muted">(made by {s.epoch?.controller ?? '–'})</span>
        </dd>
        <dt>Maintenance</dt>
        <dd>{s.maintenance ? <Badge tone="warn">on: no automatic takeover</Badge> : 'off'}</dd>
        <dt>Configuration</dt>
        <dd>{s.config_locked ? <Badge tone="warn">locked</Badge> : 'unlocked'}</dd>
        <dt>Fence agents</dt>
        <dd>
          {st.fence_agents?.length ? st.fence_agents.join(', ') : 'none'}
          {st.fence_joined === false && <> · <Badge tone="bad">not all set up here</Badge></>}
        </dd>
        {s.last_detection_ms != null && (
          <>
            <dt>Last detection</dt>
            <dd>{duration(s.last_detection_ms)}</dd>
          </>
        )}
      </dl>
    </div>
  );
}

export function Links(props: { st: ClusterStatus }) {
  const s = props.st.state;
  const links = props.st.links ?? [];
  const ages = s?.link_age_ms ?? [];
  const n = Math.max(links.length, ages.length);
  if (!n) return <p class="muted">No interconnect links.</p>;
  return (
    <div class="table-wrap">
      <table>
        <caption class="sr-only">Interconnect links</caption>
        <thead>
          <tr>
            <th scope="col">Link</th>
            <th scope="col">Last beat</th>
            <th scope="col">Round trip (avg)</th>
            <th scope="col">Lost</th>
            <th scope="col">Sent / received</th>
          </tr>
        </thead>
        <tbody>
          {Array.from({ length: n }, (_, i) => {
            const l = links[i] ?? {};
            const age = ages[i];
            const stale = age == null || age > 3000;
            return (
              <tr key={i}>
                <td>{i}</td>
                <td>{age == null ? <Badge tone="bad">never</Badge> : <Badge tone={stale ? 'bad' : 'ok'}>{duration(age)} ago</Badge>}</td>
                <td>{l.rtt_avg_us != null ? `${(l.rtt_avg_us / 1000).toFixed(1)} ms` : '–'}</td>
                <td>{l.lost ?? '–'}</td>
                <td>
                  {l.sent ?? '–'} / {l.received ?? '–'}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

export function HbDisks(props: { st: ClusterStatus }) {
  const s = props.st.state;
  const disks = props.st.disks ?? [];
  if (!disks.length) return <p class="muted">No heartbeat disks.</p>;
  return (
    <div class="table-wrap">
      <table>
        <caption class="sr-only">Heartbeat disks</caption>
        <thead>
          <tr>
            <th scope="col">Disk</th>
            <th scope="col">Own slot written</th>
            <th scope="col">Partner's slot changed</th>
            <th scope="col">Write p99</th>
            <th scope="col">Read error</th>
          </tr>
        </thead>
        <tbody>
          {disks.map((d, i) => {
            const w = s?.write_age_ms?.[i];
            const p = s?.partner_slot_age_ms?.[i];
            const err = s?.read_errors?.[i];
            const lat = props.st.write_latency?.[i];
            return (
              <tr key={d}>
                <td class="mono nowrap" title={d}>
                  {d.split('/').pop()}
                </td>
                <td>{w == null ? '–' : `${duration(w)} ago`}</td>
                <td>{p == null ? '–' : <Badge tone={p > 10_000 ? 'warn' : 'ok'}>{duration(p)} ago</Badge>}</td>
                <td>{lat?.p99_ms != null ? duration(lat.p99_ms) : '–'}</td>
                <td>{err ? <Badge tone="bad">{err}</Badge> : '–'}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

export function PoolsOwners(props: { pools: PoolStatus | null; access: AccessStates | null; here: string }) {
  const pools = props.pools?.pools ?? [];
  if (!pools.length) return <p class="muted">No pools.</p>;
  return (
    <div class="table-wrap">
      <table>
        <caption class="sr-only">Pools, their owners and access states</caption>
        <thead>
          <tr>
            <th scope="col">Pool</th>
            <th scope="col">Owner</th>
            <th scope="col">Home</th>
            <th scope="col">ALUA here ({props.here})</th>
            <th scope="col">ANA here</th>
            <th scope="col">Size / free</th>
            <th scope="col">RAID</th>
          </tr>
        </thead>
        <tbody>
          {pools.map((p) => {
            const a = props.access?.pools?.[p.name];
            const n = accessNames(a?.state);
            return (
              <tr key={p.name} data-pool={p.name}>
                <th scope="row">{p.name}</th>
                <td class="owner">
                  {p.owner ?? '–'}
                  {p.owner && p.home && p.owner !== p.home && (
                    <>
                      {' '}
                      <Badge tone="warn">away from home</Badge>
                    </>
                  )}
                </td>
                <td>{p.home ?? '–'}</td>
                <td class="alua">
                  <Badge tone={a?.state === 'active' ? 'ok' : a?.state === 'standby' ? 'info' : 'muted'}>{n.alua}</Badge>
                </td>
                <td>{n.ana}</td>
                <td>
                  {bytes(p.size)} / {bytes(p.free)}
                </td>
                <td>{p.raid?.state ?? '–'}{p.raid?.percent != null ? ` ${p.raid.percent} %` : ''}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

/** Alerts: each pool's health alerts, and the `alert` events seen here. */
export function Alerts(props: { pools: PoolStatus | null }) {
  const { rpc } = useApp();
  const [recent, setRecent] = useState<Array<Alert & { time_ms?: number; controller?: string }>>([]);
  useEffect(
    () =>
      rpc.listen(['alert'], (e: DuplexEvent) => {
        const d = (e.data ?? {}) as Alert;
        setRecent((old) => [{ ...d, time_ms: e.time_ms, controller: e.controller }, ...old].slice(0, 20));
      }),
    [rpc],
  );
  const standing = (props.pools?.pools ?? []).flatMap((p) => p.alerts.map((a) => ({ ...a, pool: a.pool ?? p.name })));
  if (!standing.length && !recent.length) return <p class="muted">No alerts.</p>;
  const tone = (s?: string) => (s === 'critical' || s === 'error' ? 'bad' : s === 'warning' ? 'warn' : 'info');
  return (
    <ul class="alerts">
      {standing.map((a, i) => (
        <li key={`s${i}`}>
          <Badge tone={tone(a.severity)}>{a.severity ?? 'alert'}</Badge> {a.pool && <strong>{a.pool}</strong>} {a.message ?? a.kind}
        </li>
      ))}
      {recent.map((a, i) => (
        <li key={`r${i}`}>
          <Badge tone={tone(a.severity)}>{a.severity ?? 'alert'}</Badge> {a.pool && <strong>{a.pool}</strong>} {a.message ?? a.kind}{' '}
          <span class="muted">
            ({a.controller ? `${a.controller}, ` : ''}
            {time(a.time_ms)})
          </span>
        </li>
      ))}
    </ul>
  );
}

export function Dashboard() {
  const cluster = useQuery<ClusterStatus>('cluster.status', {}, { topics: CLUSTER_TOPICS, everyMs: 2000 });
  const pools = useQuery<PoolStatus>('pool.status', {}, { topics: POOL_TOPICS, everyMs: 15_000 });
  const access = useQuery<AccessStates>('target.access_states', {}, { topics: POOL_TOPICS, everyMs: 15_000 });
  const st = cluster.data;
  return (
    <div class="grid">
      <Section title="Controllers" id="controllers">
        {st ? <Controllers st={st} /> : <Status q={cluster} />}
      </Section>
      <Section title="Alerts" id="alerts">
        <Alerts pools={pools.data} />
      </Section>
      <Section title="Pools" id="pool-owners">
        {pools.data ? (
          <PoolsOwners pools={pools.data} access={access.data} here={pools.data.controller} />
        ) : (
          <Status q={pools} />
        )}
        {access.error && <p class="form-error">ALUA/ANA states: {access.error.message}</p>}
      </Section>
      <Section title="Interconnect links" id="links">
        {st ? <Links st={st} /> : <Status q={cluster} />}
      </Section>
      <Section title="Heartbeat disks" id="hb-disks">
        {st ? <HbDisks st={st} /> : <Status q={cluster} />}
      </Section>
    </div>
  );
}
