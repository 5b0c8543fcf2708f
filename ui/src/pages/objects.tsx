// Exports, hosts, host groups and users: objects only config-keeper holds,
// read with `config.get {kind}` and changed with `config.apply` (one
// upsert or delete), exactly as `duplexctl export|host|host-group|user`.

import type { ComponentChildren } from 'preact';
import { cell } from '../format';
import type { Rpc } from '../rpc';
import {
  ConfirmButton,
  FormError,
  Section,
  SelectField,
  Status,
  TextField,
  splitList,
  useApp,
  useForm,
  useQuery,
  type FormState,
} from '../ui';

type Obj = Record<string, unknown> & { name: string };
type ConfigOf = { config: Record<string, Obj[] | undefined> };

function upsert(rpc: Rpc, kind: string, object: Record<string, unknown>) {
  return rpc.call('config.apply', { changes: [{ op: 'upsert', kind, object }] });
}

function remove(rpc: Rpc, kind: string, name: string) {
  return rpc.call('config.apply', { changes: [{ op: 'delete', kind, name }] });
}

/** The objects of `kind`, following `config.changed`. */
function useObjects(kind: string) {
  const q = useQuery<ConfigOf>('config.get', { kind }, { topics: ['config.changed'], everyMs: 30_000 });
  return { q, items: q.data?.config?.[kind] ?? [] };
}

/** A table of one kind's objects, with a delete button per row for admins. */
function ObjectTable(props: {
  kind: string;
  noun: string;
  columns: Array<{ title: string; value: (o: Obj) => ComponentChildren }>;
  items: Obj[];
  q: ReturnType<typeof useObjects>['q'];
  deleteNote?: string;
}) {
  const { rpc, canWrite } = useApp();
  if (!props.q.data || !props.items.length) {
    return <Status q={props.q} empty={!!props.q.data} emptyText={`No ${props.noun}s yet.`} />;
  }
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">Name</th>
            {props.columns.map((c) => (
              <th scope="col" key={c.title}>
                {c.title}
              </th>
            ))}
            {canWrite && <th scope="col">Actions</th>}
          </tr>
        </thead>
        <tbody>
          {props.items.map((o) => (
            <tr key={o.name} data-name={o.name}>
              <th scope="row">{o.name}</th>
              {props.columns.map((c) => (
                <td key={c.title}>{c.value(o)}</td>
              ))}
              {canWrite && (
                <td>
                  <ConfirmButton
                    small
                    danger
                    label="Delete"
                    title={`Delete ${props.noun} ${o.name}?`}
                    confirmLabel={`Delete ${o.name}`}
                    action={() => remove(rpc, props.kind, o.name)}
                    onDone={props.q.reload}
                  >
                    <p>
                      The {props.noun} <strong>{o.name}</strong> is removed from the configuration of both controllers.
                      {props.deleteNote ? ` ${props.deleteNote}` : ''}
                    </p>
                  </ConfirmButton>
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function CreateForm<V extends Record<string, unknown>>(props: {
  label: string;
  form: FormState<V>;
  onSubmit: (e?: Event) => void;
  children: ComponentChildren;
}) {
  return (
    <form onSubmit={props.onSubmit} class="create" aria-label={props.label}>
      <FormError message={props.form.top} />
      <div class="form-grid">{props.children}</div>
      <div class="buttons">
        <button type="submit" class="primary" disabled={props.form.busy}>
          {props.form.busy ? 'Saving…' : props.label}
        </button>
      </div>
    </form>
  );
}

export function HostsPage() {
  const { rpc, canWrite } = useApp();
  const { q, items } = useObjects('host');
  const form = useForm({ name: '', iqns: '', nqns: '' });
  const submit = form.submit(
    (v) => upsert(rpc, 'host', { name: v.name.trim(), iqns: splitList(v.iqns), nqns: splitList(v.nqns) }),
    () => {
      form.reset();
      q.reload();
    },
  );
  return (
    <>
      <Section title="Hosts" id="hosts">
        <ObjectTable
          kind="host"
          noun="host"
          q={q}
          items={items}
          columns={[
            { title: 'iSCSI initiators', value: (o) => <span class="mono">{cell(o.iqns)}</span> },
            { title: 'NVMe host NQNs', value: (o) => <span class="mono">{cell(o.nqns)}</span> },
            { title: 'CHAP', value: (o) => (o.chap ? 'yes' : 'no') },
          ]}
          deleteNote="A host still in a group is refused."
        />
      </Section>
      {canWrite && (
        <Section title="Add a host" id="create-host">
          <CreateForm label="Add host" form={form} onSubmit={submit}>
            <TextField form={form} name="name" label="Name" required placeholder="h1" />
            <TextField form={form} name="iqns" label="iSCSI initiator names" placeholder="iqn.1994-05.com.example:h1" hint="Separate several with commas or spaces." />
            <TextField form={form} name="nqns" label="NVMe host NQNs" placeholder="nqn.2014-08.org.nvmexpress:uuid:…" hint="Separate several with commas or spaces." />
          </CreateForm>
        </Section>
      )}
    </>
  );
}

export function HostGroupsPage() {
  const { rpc, canWrite } = useApp();
  const { q, items } = useObjects('host_group');
  const hosts = useObjects('host').items;
  const form = useForm({ name: '', hosts: [] as string[] });
  const submit = form.submit(
    (v) => upsert(rpc, 'host_group', { name: v.name.trim(), hosts: v.hosts }),
    () => {
      form.reset();
      q.reload();
    },
  );
  const chosen = form.values.hosts;
  return (
    <>
      <Section title="Host groups" id="host-groups">
        <ObjectTable
          kind="host_group"
          noun="host group"
          q={q}
          items={items}
          columns={[{ title: 'Hosts', value: (o) => cell(o.hosts) }]}
          deleteNote="A group that exports still use is refused."
        />
      </Section>
      {canWrite && (
        <Section title="Add a host group" id="create-host-group">
          <CreateForm label="Add host group" form={form} onSubmit={submit}>
            <TextField form={form} name="name" label="Name" required placeholder="g1" />
            <fieldset class={form.errors.hosts ? 'invalid' : undefined}>
              <legend>Hosts</legend>
              {!hosts.length && <p class="muted">No hosts yet: add them on the Hosts page.</p>}
              <ul class="checks">
                {hosts.map((h) => (
                  <li key={h.name}>
                    <label>
                      <input
                        type="checkbox"
                        name="hosts"
                        value={h.name}
                        checked={chosen.includes(h.name)}
                        onChange={(e) =>
                          form.set(
                            'hosts',
                            (e.currentTarget as HTMLInputElement).checked ? [...chosen, h.name] : chosen.filter((x) => x !== h.name),
                          )
                        }
                      />{' '}
                      {h.name}
                    </label>
                  </li>
                ))}
              </ul>
              {form.errors.hosts && (
                <p class="field-error" role="alert">
                  {form.errors.hosts}
                </p>
              )}
            </fieldset>
          </CreateForm>
        </Section>
      )}
    </>
  );
}

export function ExportsPage() {
  const { rpc, canWrite } = useApp();
  const { q, items } = useObjects('export');
  const volumes = useObjects('volume').items;
  const groups = useObjects('host_group').items;
  const form = useForm({ name: '', volume: '', host_group: '', protocol: 'iscsi', lun: '', nsid: '' });
  const v = form.values;
  const volume = v.volume || volumes[0]?.name || '';
  const group = v.host_group || groups[0]?.name || '';
  const submit = form.submit(
    (x) => {
      const o: Record<string, unknown> = { name: x.name.trim(), volume, protocol: x.protocol, host_group: group };
      // A number the server checks; text that is no number goes as is, so
      // the server's message names the field.
      const num = (s: string) => (/^\d+$/.test(s.trim()) ? Number(s.trim()) : s);
      // Empty: the first number the group's exports of that protocol do
      // not use (the server requires one, and checks clashes itself).
      const free = (key: 'lun' | 'nsid', from: number) => {
        const used = new Set(items.filter((e) => e.host_group === group && e.protocol === x.protocol).map((e) => e[key]));
        let n = from;
        while (used.has(n)) n++;
        return n;
      };
      if (x.protocol === 'iscsi') o.lun = x.lun.trim() ? num(x.lun) : free('lun', 0);
      else o.nsid = x.nsid.trim() ? num(x.nsid) : free('nsid', 1);
      return upsert(rpc, 'export', o);
    },
    () => {
      form.reset();
      q.reload();
    },
  );
  return (
    <>
      <Section title="Exports" id="exports">
        <ObjectTable
          kind="export"
          noun="export"
          q={q}
          items={items}
          columns={[
            { title: 'Volume', value: (o) => cell(o.volume) },
            { title: 'Protocol', value: (o) => (o.protocol === 'nvme' ? 'NVMe/TCP' : 'iSCSI') },
            { title: 'LUN / NSID', value: (o) => cell(o.lun ?? o.nsid) },
            { title: 'Host group', value: (o) => cell(o.host_group) },
          ]}
        />
      </Section>
      {canWrite && (
        <Section title="Export a volume" id="create-export">
          <CreateForm label="Add export" form={form} onSubmit={submit}>
            <TextField form={form} name="name" label="Name" required placeholder="e1" />
            <SelectField
              form={form}
              name="volume"
              label="Volume"
              options={volumes.length ? volumes.map((x) => ({ value: x.name })) : [{ value: '', label: 'No volume yet' }]}
            />
            <SelectField
              form={form}
              name="host_group"
              label="Host group"
              options={groups.length ? groups.map((x) => ({ value: x.name })) : [{ value: '', label: 'No host group yet' }]}
            />
            <SelectField
              form={form}
              name="protocol"
              label="Protocol"
              options={[
                { value: 'iscsi', label: 'iSCSI' },
                { value: 'nvme', label: 'NVMe/TCP' },
              ]}
            />
            {v.protocol === 'iscsi' ? (
              <TextField form={form} name="lun" label="LUN" placeholder="0" hint="Leave empty for the next free one." />
            ) : (
              <TextField form={form} name="nsid" label="Namespace id" placeholder="1" hint="Leave empty for the next free one." />
            )}
          </CreateForm>
        </Section>
      )}
    </>
  );
}

export function UsersPage() {
  const { rpc, canWrite, session } = useApp();
  const { q, items } = useObjects('user');
  const form = useForm({ name: '', role: 'read_only', password: '' });
  const submit = form.submit(
    // config-keeper hashes `password` before anything stores or logs it.
    (v) => upsert(rpc, 'user', { name: v.name.trim(), role: v.role, password: v.password }),
    () => {
      form.reset();
      q.reload();
    },
  );
  return (
    <>
      <Section title="Users" id="users">
        <ObjectTable
          kind="user"
          noun="user"
          q={q}
          items={items}
          columns={[
            {
              title: 'Role',
              value: (o) => (
                <>
                  {o.role === 'admin' ? 'admin' : 'read-only'}
                  {o.name === session.user && <span class="muted"> (you)</span>}
                </>
              ),
            },
          ]}
          deleteNote="Their sessions end at once."
        />
      </Section>
      {canWrite && (
        <Section title="Add a user" id="create-user">
          <CreateForm label="Add user" form={form} onSubmit={submit}>
            <TextField form={form} name="name" label="Login name" required placeholder="ann" />
            <SelectField
              form={form}
              name="role"
              label="Role"
              options={[
                { value: 'read_only', label: 'read-only' },
                { value: 'admin', label: 'admin' },
              ]}
            />
            <TextField form={form} name="password" label="Password" type="password" required autocomplete="new-password" />
          </CreateForm>
        </Section>
      )}
    </>
  );
}
