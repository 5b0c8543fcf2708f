// Pools: the list (`pool.status`), a create form with the layout table of
// `pool.layouts` for the disks picked, and delete with confirmation. Both
// changes run as jobs (they can take minutes on real disks).

import { useEffect } from 'preact/hooks';
import { bytes, members } from '../format';
import { runJob, type Job } from '../rpc';
import {
  Badge,
  ConfirmButton,
  Field,
  FormError,
  Section,
  SelectField,
  Status,
  TextField,
  useApp,
  useForm,
  useQuery,
  Table,
  SubmitRow,
} from '../ui';
import { DISK_TOPICS, type DiskList } from './disks';
import { POOL_TOPICS, type PoolStatus } from './dashboard';

interface LayoutRow {
  layout: string;
  copies?: number | null;
  possible: boolean;
  reason?: string | null;
  capacity_fraction: number;
  fault_tolerance: number;
  disks_used: number;
}

/** A job's progress for people: its last event's topic and data. */
export function progressText(j: Job): string {
  if (j.state !== 'running') return `${j.method}: ${j.state}`;
  if (!j.progress) return `${j.method}: running…`;
  return `${j.method}: ${j.progress.topic} ${members(j.progress.data)}`;
}

function layoutName(l: unknown): string {
  if (typeof l === 'string') return l;
  if (l && typeof l === 'object' && 'layout' in l) {
    const o = l as { layout: string; copies?: number };
    return o.copies ? `${o.layout} (${o.copies} copies)` : o.layout;
  }
  return '–';
}

function CreatePool(props: { onDone: () => void }) {
  const { rpc } = useApp();
  const disks = useQuery<DiskList>('disk.list', {}, { topics: DISK_TOPICS });
  const form = useForm({ name: '', layout: '', copies: '', disks: [] as string[], tier: '', wipe: false });
  const v = form.values;
  const n = v.disks.length;
  const layouts = useQuery<{ disks: number; layouts: LayoutRow[] }>('pool.layouts', { disks: Math.max(n, 1) });
  // Only the answer for the disks picked now (not one still on its way).
  const rows = layouts.data?.disks === n ? layouts.data.layouts : [];
  const usable = (disks.data?.disks ?? []).filter((d) => !d.pool && (d.qualifies || d.wipe_would_qualify));
  const raw = usable.filter((d) => v.disks.includes(d.wwn)).reduce((s, d) => s + d.size, 0);
  const names = [...new Set(rows.map((r) => r.layout))];

  // Keep a layout chosen that these disks allow.
  useEffect(() => {
    if (!rows.length || !n) return;
    const ok = rows.filter((r) => r.possible).map((r) => r.layout);
    if (!ok.includes(v.layout) && ok.length) form.set('layout', ok[0]);
  }, [layouts.data, n]);

  const toggle = (wwn: string, on: boolean) =>
    form.set('disks', on ? [...v.disks, wwn] : v.disks.filter((x) => x !== wwn));

  const submit = form.submit(
    async (x) => {
      const params: Record<string, unknown> = { name: x.name.trim(), layout: x.layout, disks: x.disks, wipe: x.wipe };
      if (x.copies) params.copies = Number(x.copies);
      if (x.tier) params.tier = x.tier;
      await runJob(rpc, 'pool.create', params, (j) => form.setProgress(progressText(j)));
    },
    () => {
      form.reset();
      props.onDone();
    },
  );

  return (
    <form onSubmit={submit} class="create" aria-label="Create a pool">
      <FormError message={form.top} />
      <div class="form-grid">
        <TextField form={form} name="name" label="Name" required placeholder="p1" />
        <SelectField
          form={form}
          name="layout"
          label="Layout"
          options={[{ value: '', label: n ? 'Choose…' : 'Pick disks first' }, ...names.map((l) => ({ value: l, disabled: !rows.some((r) => r.layout === l && r.possible) }))]}
        />
        {v.layout === 'mirror' && (
          <SelectField
            form={form}
            name="copies"
            label="Copies"
            options={[{ value: '', label: 'Default' }, { value: '2' }, { value: '3' }]}
          />
        )}
        <SelectField
          form={form}
          name="tier"
          label="Tier"
          options={[{ value: '', label: "The disks' own" }, { value: 'fast' }, { value: 'regular' }]}
        />
      </div>
      <fieldset class={form.errors.disks ? 'invalid' : undefined} aria-describedby={form.errors.disks ? 'pool-disks-err' : undefined}>
        <legend>Disks</legend>
        {!usable.length && <Status q={disks} empty={!!disks.data} emptyText="No disk may join a pool now." />}
        <ul class="checks">
          {usable.map((d) => (
            <li key={d.wwn}>
              <label>
                <input type="checkbox" name="disks" value={d.wwn} checked={v.disks.includes(d.wwn)} onChange={(e) => toggle(d.wwn, (e.currentTarget as HTMLInputElement).checked)} />{' '}
                <span class="mono">{d.kernel_name}</span> {bytes(d.size)} {d.tier}
                {!d.qualifies && <span class="muted"> (needs a wipe: {d.refusal})</span>}
              </label>
            </li>
          ))}
        </ul>
        {form.errors.disks && (
          <p id="pool-disks-err" class="field-error" role="alert">
            {form.errors.disks}
          </p>
        )}
      </fieldset>
      <Field label="Wipe old signatures on these disks first" error={form.errors.wipe}>
        {(id, d) => (
          <input id={id} type="checkbox" checked={v.wipe} aria-describedby={d} onChange={(e) => form.set('wipe', (e.currentTarget as HTMLInputElement).checked)} />
        )}
      </Field>
      <h3>What each layout gives with {n || 'no'} disk{n === 1 ? '' : 's'}</h3>
      {n === 0 ? (
        <p class="muted">Pick disks to see each layout's capacity and how many disks may fail.</p>
      ) : !rows.length ? (
        layouts.error ? <Status q={layouts} /> : <p class="muted">Loading…</p>
      ) : (
        <div class="table-wrap">
          <table class="layouts" data-disks={n}>
            <thead>
              <tr>
                <th scope="col">Layout</th>
                <th scope="col">Capacity</th>
                <th scope="col">Disks that may fail</th>
                <th scope="col">Disks used</th>
                <th scope="col">Possible</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={`${r.layout}-${r.copies ?? ''}`} class={r.layout === v.layout ? 'selected' : undefined}>
                  <th scope="row">
                    {r.layout}
                    {r.copies ? ` ×${r.copies}` : ''}
                  </th>
                  <td>
                    {Math.round(r.capacity_fraction * 100)} %{raw ? ` · ${bytes(raw * r.capacity_fraction)}` : ''}
                  </td>
                  <td>{r.fault_tolerance}</td>
                  <td>{r.disks_used}</td>
                  <td>{r.possible ? <Badge tone="ok">yes</Badge> : <span class="muted">no: {r.reason}</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <SubmitRow form={form} label="Create pool" busyLabel="Creating…" />
    </form>
  );
}

export function PoolsPage() {
  const { rpc, canWrite } = useApp();
  const q = useQuery<PoolStatus>('pool.status', {}, { topics: POOL_TOPICS, everyMs: 15_000 });
  const pools = q.data?.pools ?? [];
  return (
    <>
      <Section title="Pools" id="pools">
        {!q.data || !pools.length ? (
          <Status q={q} empty={!!q.data} emptyText="No pools yet." />
        ) : (
          <Table headers={['Name', 'Owner', 'Home', 'Layout', 'Size', 'Free', 'Volumes', 'Active here', 'Alerts', canWrite && 'Actions']}>
                {pools.map((p) => (
                  <tr key={p.name} data-pool={p.name}>
                    <th scope="row">{p.name}</th>
                    <td>{p.owner ?? '–'}</td>
                    <td>{p.home ?? '–'}</td>
                    <td>{layoutName(p.layout)}</td>
                    <td>{bytes(p.size)}</td>
                    <td>{bytes(p.free)}</td>
                    <td>{p.volumes}</td>
                    <td>{p.active_here ? <Badge tone="ok">yes</Badge> : 'no'}</td>
                    <td>{p.alerts.length ? <Badge tone="warn">{p.alerts.length}</Badge> : '–'}</td>
                    {canWrite && (
                      <td>
                        <ConfirmButton
                          small
                          danger
                          label="Delete"
                          title={`Delete pool ${p.name}?`}
                          confirmLabel={`Delete ${p.name}`}
                          action={(progress) => runJob(rpc, 'pool.delete', { name: p.name }, (j) => progress(progressText(j)))}
                          onDone={q.reload}
                        >
                          <p>
                            The pool <strong>{p.name}</strong> and its volume group are removed from the disks. A pool that still has
                            volumes is refused.
                          </p>
                        </ConfirmButton>
                      </td>
                    )}
                  </tr>
                ))}
</Table>
        )}
      </Section>
      {canWrite && (
        <Section title="Create a pool" id="create-pool">
          <CreatePool onDone={q.reload} />
        </Section>
      )}
    </>
  );
}
