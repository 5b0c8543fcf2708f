// Disks: every shared disk with its tier, its pool and whether it may join
// one (`disk.list`).

import { bytes } from '../format';
import { Badge, Section, Status, useQuery, Table } from '../ui';

export interface Disk {
  path: string;
  kernel_name: string;
  wwn: string;
  serial: string;
  model: string;
  size: number;
  rotational: boolean;
  transport: string;
  tier: string;
  shared: boolean;
  pool?: string | null;
  vg?: string | null;
  qualifies: boolean;
  refusal?: string | null;
  wipe_would_qualify: boolean;
}

export interface DiskList {
  controller: string;
  partner_reachable: boolean;
  disks: Disk[];
}

export const DISK_TOPICS = ['pool.created', 'pool.deleted', 'config.changed'];

export function DisksPage() {
  const q = useQuery<DiskList>('disk.list', {}, { topics: DISK_TOPICS, everyMs: 30_000 });
  const disks = q.data?.disks ?? [];
  return (
    <Section title={`Disks${q.data ? ` seen by ${q.data.controller}` : ''}`} id="disks">
      {q.data && !q.data.partner_reachable && (
        <p class="notice">The partner did not answer: whether a disk is shared is unknown.</p>
      )}
      {!q.data || !disks.length ? (
        <Status q={q} empty={!!q.data} emptyText="No disks." />
      ) : (
        <Table headers={['Disk', 'WWN', 'Size', 'Tier', 'Transport', 'Shared', 'Pool', 'May join a pool']}>
              {disks.map((d) => (
                <tr key={d.path}>
                  <th scope="row" class="mono" title={d.path}>
                    {d.kernel_name}
                    <div class="muted small-print">{d.model} · {d.serial}</div>
                  </th>
                  <td class="mono">{d.wwn}</td>
                  <td>{bytes(d.size)}</td>
                  <td>{d.tier}</td>
                  <td>{d.transport}</td>
                  <td>{d.shared ? <Badge tone="ok">yes</Badge> : <Badge tone="warn">no</Badge>}</td>
                  <td>{d.pool ?? '–'}</td>
                  <td>
                    {d.qualifies ? (
                      <Badge tone="ok">yes</Badge>
                    ) : (
                      <>
                        <Badge tone="muted">no</Badge> {d.refusal}
                        {d.wipe_would_qualify && <span class="muted"> (a wipe would let it)</span>}
                      </>
                    )}
                  </td>
                </tr>
              ))}
</Table>
      )}
    </Section>
  );
}
