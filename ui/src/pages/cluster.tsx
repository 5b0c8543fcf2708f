// The cluster page: where the pair stands, the planned moves (failover,
// giveback) and maintenance, each behind a confirmation; the live event
// stream; the recent jobs; and the takeover timeline.

import { useEffect, useState } from 'preact/hooks';
import { duration, members, time } from '../format';
import { runJob, type DuplexEvent, type Job } from '../rpc';
import { Timeline, type Entry } from '../timeline';
import { Badge, ConfirmButton, Section, Status, useApp, useQuery, Table } from '../ui';
import { CLUSTER_TOPICS, Controllers, POOL_TOPICS, type ClusterStatus, type PoolStatus } from './dashboard';
import { progressText } from './pools';

const MOVE_TOPICS = ['cluster.*', 'job.changed', 'target.access_state', 'pool.*'];

/** Every event this connection receives, newest first (the last 100). */
function EventStream() {
  const { rpc } = useApp();
  const [events, setEvents] = useState<Array<DuplexEvent & { n: number }>>([]);
  useEffect(() => {
    let n = 0;
    return rpc.listen(['*'], (e) => setEvents((old) => [{ ...e, n: ++n }, ...old].slice(0, 100)));
  }, [rpc]);
  if (!events.length) return <p class="muted">Waiting for events… (they appear here as they happen)</p>;
  return (
    <ol class="events" aria-live="polite" aria-relevant="additions">
      {events.map((e) => (
        <li key={e.n} data-topic={e.topic}>
          <span class="ev-time">{time(e.time_ms ?? Date.now())}</span> <strong class="ev-topic">{e.topic}</strong>{' '}
          {e.controller && <Badge tone="muted">{e.controller}</Badge>} <span class="ev-data">{members(e.data)}</span>
          {e.action_id && <span class="muted"> · action {e.action_id}</span>}
        </li>
      ))}
    </ol>
  );
}

function Jobs() {
  const q = useQuery<{ jobs: Job[] }>('job.list', {}, { topics: ['job.changed'], everyMs: 10_000 });
  const jobs = (q.data?.jobs ?? []).slice(0, 10);
  if (!q.data || !jobs.length) return <Status q={q} empty={!!q.data} emptyText="No jobs on this controller yet." />;
  return (
    <Table headers={['Method', 'State', 'Started', 'Took']}>
          {jobs.map((j) => (
            <tr key={j.job}>
              <td>
                <span class="mono nowrap">{j.method}</span>
                <div class="muted small-print mono">{j.job}</div>
              </td>
              <td>
                <Badge tone={j.state === 'succeeded' ? 'ok' : j.state === 'failed' ? 'bad' : 'info'}>{j.state}</Badge>
              </td>
              <td>{time(j.started_ms)}</td>
              <td class="nowrap">{j.ended_ms ? duration(j.ended_ms - j.started_ms) : '–'}</td>
            </tr>
          ))}
</Table>
  );
}

function Moves(props: { st: ClusterStatus; pools: PoolStatus | null; onDone: () => void }) {
  const { rpc } = useApp();
  const s = props.st.state;
  const me = s?.me ?? props.st.controller;
  const partner = s?.partner ?? 'the partner';
  const all = props.pools?.pools ?? [];
  const mine = all.filter((p) => p.owner === me);
  const away = mine.filter((p) => p.home && p.home !== me);
  const theirsFromHere = all.filter((p) => p.owner === partner && p.home === me);
  const [pool, setPool] = useState('');
  const maintenance = !!s?.maintenance;
  return (
    <div class="moves">
      <div class="move">
        <ConfirmButton
          label="Failover…"
          title={`Fail over to ${partner}?`}
          confirmLabel="Fail over"
          danger
          disabled={!mine.length}
          action={(progress) =>
            runJob(rpc, 'cluster.failover', pool ? { pool } : {}, (j) => progress(progressText(j)))
          }
          onDone={props.onDone}
        >
          <p>
            A planned move: {me} sets the pool's paths standby, records {partner} as the owner under a new epoch, exports the
            pool, and {partner} imports it and goes active. Hosts pause I/O meanwhile.
          </p>
          <label for="failover-pool">Pool</label>
          <select id="failover-pool" value={pool} onChange={(e) => setPool((e.currentTarget as HTMLSelectElement).value)}>
            <option value="">Every pool {me} owns ({mine.map((p) => p.name).join(', ') || 'none'})</option>
            {mine.map((p) => (
              <option value={p.name} key={p.name}>
                {p.name}
              </option>
            ))}
          </select>
        </ConfirmButton>
        <p class="muted">
          Moves the pools {me} owns{mine.length ? ` (${mine.map((p) => p.name).join(', ')})` : ' (none now)'} to {partner}.
        </p>
      </div>
      <div class="move">
        <ConfirmButton
          label="Giveback…"
          title={`Give pools back to ${partner}?`}
          confirmLabel="Give back"
          disabled={!away.length}
          action={(progress) => runJob(rpc, 'cluster.giveback', {}, (j) => progress(progressText(j)))}
          onDone={props.onDone}
        >
          <p>
            Moves the pools {me} holds away from their home ({away.map((p) => p.name).join(', ')}) back to {partner}, the same
            steps as a failover.
          </p>
        </ConfirmButton>
        <p class="muted">
          {away.length
            ? `${me} holds ${away.map((p) => p.name).join(', ')} away from home.`
            : theirsFromHere.length
              ? `${partner} holds ${theirsFromHere.map((p) => p.name).join(', ')}, whose home is ${me}: give back from ${partner}'s management page.`
              : 'Every pool is at home.'}
        </p>
      </div>
      <div class="move">
        <ConfirmButton
          label={maintenance ? 'End maintenance…' : 'Maintenance…'}
          title={maintenance ? 'End maintenance?' : 'Start maintenance?'}
          confirmLabel={maintenance ? 'End maintenance' : 'Start maintenance'}
          action={() => rpc.call('cluster.maintenance', { on: !maintenance })}
          onDone={props.onDone}
        >
          {maintenance ? (
            <p>Automatic takeovers are allowed again: if {partner} fails, {me} fences it and takes its pools.</p>
          ) : (
            <p>
              Holds every automatic takeover: if a controller fails meanwhile, its pools stay unserved until maintenance ends.
              Planned moves still work.
            </p>
          )}
        </ConfirmButton>
        <p class="muted">Maintenance is {maintenance ? 'on: automatic takeovers are held.' : 'off.'}</p>
      </div>
    </div>
  );
}

export function ClusterPage() {
  const { canWrite } = useApp();
  const cluster = useQuery<ClusterStatus>('cluster.status', {}, { topics: CLUSTER_TOPICS, everyMs: 2000 });
  const pools = useQuery<PoolStatus>('pool.status', {}, { topics: POOL_TOPICS, everyMs: 15_000 });
  const timeline = useQuery<{ entries: Entry[] }>('cluster.timeline', {}, { topics: MOVE_TOPICS, everyMs: 15_000 });
  const reload = () => {
    cluster.reload();
    pools.reload();
    timeline.reload();
  };
  const st = cluster.data;
  return (
    <div class="grid">
      <Section title="State" id="cluster-state">
        {st ? <Controllers st={st} /> : <Status q={cluster} />}
        {pools.data && (
          <ul class="owners">
            {pools.data.pools.map((p) => (
              <li key={p.name} data-pool={p.name}>
                Pool <strong>{p.name}</strong>: owner <strong class="owner">{p.owner ?? '–'}</strong>
                {p.home && <span class="muted"> (home {p.home})</span>}
              </li>
            ))}
          </ul>
        )}
      </Section>
      {canWrite && st && (
        <Section title="Planned moves and maintenance" id="moves">
          <Moves st={st} pools={pools.data} onDone={reload} />
        </Section>
      )}
      <Section title="Takeover timeline" id="timeline">
        <p class="muted">
          Each takeover, failover and giveback this controller ran, step by step under its action_id, on one time axis.
        </p>
        {timeline.data ? <Timeline entries={timeline.data.entries} /> : <Status q={timeline} />}
      </Section>
      <Section title="Live events" id="events">
        <EventStream />
      </Section>
      <Section title="Recent jobs" id="jobs">
        <Jobs />
      </Section>
    </div>
  );
}
