// The audit log (`config.audit`): every write an administrator made on
// either controller, newest first, a page at a time.

import { useState } from 'preact/hooks';
import { time } from '../format';
import { Badge, Section, Status, useApp, useQuery } from '../ui';

interface AuditEntry {
  controller: string;
  seq: number;
  time_ms: number;
  action_id: string;
  method: string;
  caller: string;
  result: string;
  user?: string | null;
  address?: string | null;
  error?: string | null;
  params?: unknown;
}

const PAGE = 50;

/** The method a `job.start` ran, which is what the administrator did. */
function jobMethod(e: AuditEntry): string | undefined {
  const p = e.params as { method?: unknown } | null | undefined;
  return e.method === 'job.start' && typeof p?.method === 'string' ? p.method : undefined;
}

export function AuditPage() {
  const { rpc } = useApp();
  const q = useQuery<{ entries: AuditEntry[]; unreplicated: number }>('config.audit', { limit: PAGE }, { topics: ['config.changed', 'job.changed'], everyMs: 30_000 });
  const [older, setOlder] = useState<AuditEntry[]>([]);
  const [end, setEnd] = useState(false);
  const [err, setErr] = useState<string | null>(null);
  const entries = [...(q.data?.entries ?? []), ...older];
  const more = () => {
    const last = entries[entries.length - 1];
    if (!last) return;
    rpc.call<{ entries: AuditEntry[] }>('config.audit', { limit: PAGE, before_ms: last.time_ms }).then(
      (r) => {
        setOlder((o) => [...o, ...r.entries]);
        setEnd(r.entries.length < PAGE);
      },
      (e: Error) => setErr(e.message),
    );
  };
  return (
    <Section title="Changes made by administrators" id="audit">
      {q.data && q.data.unreplicated > 0 && (
        <p class="notice">{q.data.unreplicated} entries are not yet passed to the partner.</p>
      )}
      {!q.data || !entries.length ? (
        <Status q={q} empty={!!q.data} emptyText="No change recorded yet." />
      ) : (
        <>
          <div class="table-wrap">
            <table class="audit">
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">User</th>
                  <th scope="col">Method</th>
                  <th scope="col">Result</th>
                  <th scope="col">Controller</th>
                  <th scope="col">Details</th>
                </tr>
              </thead>
              <tbody>
                {entries.map((e) => (
                  <tr key={`${e.controller}-${e.seq}`}>
                    <td>{time(e.time_ms)}</td>
                    <td>
                      {e.user ?? <span class="muted">{e.caller}</span>}
                      {e.address && <div class="muted small-print">{e.address}</div>}
                    </td>
                    <td>
                      <span class="mono nowrap">{jobMethod(e) ?? e.method}</span>
                      {jobMethod(e) && <div class="muted small-print">as a job</div>}
                    </td>
                    <td>
                      {e.result === 'ok' ? <Badge tone="ok">ok</Badge> : <Badge tone="bad">{e.result}</Badge>}
                      {e.error && <div class="small-print">{e.error}</div>}
                    </td>
                    <td>{e.controller}</td>
                    <td>
                      <details>
                        <summary>action {e.action_id}</summary>
                        <pre>{JSON.stringify(e.params ?? null, null, 2)}</pre>
                      </details>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {err && <p class="form-error">{err}</p>}
          {!end && entries.length >= PAGE && (
            <div class="buttons">
              <button type="button" onClick={more}>
                Older entries
              </button>
            </div>
          )}
        </>
      )}
    </Section>
  );
}
