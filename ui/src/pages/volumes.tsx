// Volumes: the list and the snapshot/clone tree (`volume.list`), create
// (a job), resize, snapshot, clone and delete.

import { runJob } from '../rpc';
import {
  Badge,
  ConfirmButton,
  FormButton,
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
import { POOL_TOPICS, type PoolStatus } from './dashboard';
import { progressText } from './pools';

interface Volume {
  name: string;
  pool: string;
  size: string;
  size_bytes: number;
  read_only?: boolean | null;
  active_here: boolean;
  present: boolean;
  parent?: string | null;
  children: string[];
  wwn: string;
  serial: string;
  device: string;
}

interface TreeNode {
  name: string;
  children: TreeNode[];
}

interface VolumeList {
  volumes: Volume[];
  tree: TreeNode[];
}

export const VOLUME_TOPICS = ['volume.*', 'pool.*', 'config.changed'];

function Tree(props: { nodes: TreeNode[]; byName: Map<string, Volume> }) {
  return (
    <ul class="tree">
      {props.nodes.map((n) => {
        const v = props.byName.get(n.name);
        return (
          <li key={n.name}>
            <span class="tree-name">{n.name}</span>{' '}
            <span class="muted">
              {v ? `${v.size}${v.read_only ? ', read-only' : ''}${v.parent ? `, of ${v.parent}` : ''}` : ''}
            </span>
            {n.children.length > 0 && <Tree nodes={n.children} byName={props.byName} />}
          </li>
        );
      })}
    </ul>
  );
}

function CreateVolume(props: { onDone: () => void }) {
  const { rpc } = useApp();
  const pools = useQuery<PoolStatus>('pool.status', {}, { topics: POOL_TOPICS });
  const names = (pools.data?.pools ?? []).map((p) => p.name);
  const form = useForm({ name: '', pool: '', size: '' });
  const pool = form.values.pool || names[0] || '';
  const submit = form.submit(
    (v) => runJob(rpc, 'volume.create', { name: v.name.trim(), pool, size: v.size.trim() }, (j) => form.setProgress(progressText(j))),
    () => {
      form.reset();
      props.onDone();
    },
  );
  return (
    <form onSubmit={submit} class="create" aria-label="Create a volume">
      <FormError message={form.top} />
      <div class="form-grid">
        <TextField form={form} name="name" label="Name" required placeholder="v1" />
        <SelectField
          form={form}
          name="pool"
          label="Pool"
          options={names.length ? names.map((n) => ({ value: n })) : [{ value: '', label: 'No pool yet' }]}
        />
        <TextField form={form} name="size" label="Size" required placeholder="10GiB" hint="With a unit: MiB, GiB, TiB" />
      </div>
      <SubmitRow form={form} label="Create volume" busyLabel="Creating…" />
    </form>
  );
}

export function VolumesPage() {
  const { rpc, canWrite } = useApp();
  const q = useQuery<VolumeList>('volume.list', {}, { topics: VOLUME_TOPICS, everyMs: 30_000 });
  const vols = q.data?.volumes ?? [];
  const byName = new Map(vols.map((v) => [v.name, v]));
  return (
    <>
      <Section title="Volumes" id="volumes">
        {!q.data || !vols.length ? (
          <Status q={q} empty={!!q.data} emptyText="No volumes yet." />
        ) : (
          <Table headers={['Name', 'Pool', 'Size', 'Mode', 'Active here', 'Parent', 'WWN', canWrite && 'Actions']}>
                {vols.map((v) => (
                  <tr key={v.name} data-volume={v.name}>
                    <th scope="row">{v.name}</th>
                    <td>{v.pool}</td>
                    <td>{v.size}</td>
                    <td>{v.read_only == null ? '–' : v.read_only ? 'read-only' : 'read-write'}</td>
                    <td>{v.active_here ? <Badge tone="ok">yes</Badge> : 'no'}</td>
                    <td>{v.parent ?? '–'}</td>
                    <td class="mono">{v.wwn}</td>
                    {canWrite && (
                      <td class="actions">
                        <FormButton
                          label="Resize"
                          title={`Resize ${v.name}`}
                          submitLabel="Resize"
                          fields={[{ name: 'size', label: 'New size', initial: v.size, hint: 'Volumes only grow.' }]}
                          run={(x) => rpc.call('volume.resize', { name: v.name, size: x.size.trim() })}
                          onDone={q.reload}
                        />
                        <FormButton
                          label="Snapshot"
                          title={`Snapshot ${v.name}`}
                          submitLabel="Take snapshot"
                          fields={[{ name: 'name', label: 'Snapshot name', initial: `${v.name}-snap` }]}
                          run={(x) => rpc.call('volume.snapshot', { source: v.name, name: x.name.trim() })}
                          onDone={q.reload}
                        >
                          <p class="muted">A read-only snapshot of {v.name} as it is now.</p>
                        </FormButton>
                        <FormButton
                          label="Clone"
                          title={`Clone ${v.name}`}
                          submitLabel="Clone"
                          fields={[{ name: 'name', label: 'Clone name', initial: `${v.name}-clone` }]}
                          run={(x) => rpc.call('volume.clone', { source: v.name, name: x.name.trim() })}
                          onDone={q.reload}
                        >
                          <p class="muted">A writable copy of {v.name}.</p>
                        </FormButton>
                        <ConfirmButton
                          small
                          danger
                          label="Delete"
                          title={`Delete volume ${v.name}?`}
                          confirmLabel={`Delete ${v.name}`}
                          action={() => rpc.call('volume.delete', { name: v.name })}
                          onDone={q.reload}
                        >
                          <p>
                            Its data is lost. A volume that is still exported is refused: delete its exports first.
                          </p>
                        </ConfirmButton>
                      </td>
                    )}
                  </tr>
                ))}
</Table>
        )}
      </Section>
      {q.data && q.data.tree.length > 0 && (
        <Section title="Snapshots and clones" id="tree">
          <Tree nodes={q.data.tree} byName={byName} />
        </Section>
      )}
      {canWrite && (
        <Section title="Create a volume" id="create-volume">
          <CreateVolume onDone={q.reload} />
        </Section>
      )}
    </>
  );
}
