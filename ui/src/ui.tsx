// Shared pieces: the app context, data loading that follows events, forms
// that put the server's validation message next to the field it names,
// and confirmation dialogs.

import { createContext, type ComponentChildren } from 'preact';
import { useCallback, useContext, useEffect, useRef, useState } from 'preact/hooks';
import { RpcError, type Rpc, type Session } from './rpc';

export interface AppCtx {
  rpc: Rpc;
  session: Session;
  /** Admins only: read_only users get no change buttons or forms at all. */
  canWrite: boolean;
}

export const Ctx = createContext<AppCtx | null>(null);

export function useApp(): AppCtx {
  const c = useContext(Ctx);
  if (!c) throw new Error('no app context');
  return c;
}

export interface Query<T> {
  data: T | null;
  error: RpcError | null;
  loading: boolean;
  reload: () => void;
}

/**
 * Calls `method` now, again whenever an event matching `topics` arrives
 * (bursts folded into one call), when the connection comes back, and every
 * `everyMs` as a backstop for events missed while it was down.
 */
export function useQuery<T>(
  method: string,
  params: unknown = {},
  opts: { topics?: string[]; everyMs?: number } = {},
): Query<T> {
  const { rpc } = useApp();
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<RpcError | null>(null);
  const [loading, setLoading] = useState(true);
  const key = JSON.stringify(params);
  const seq = useRef(0);
  const load = useCallback(() => {
    const n = ++seq.current;
    rpc.call<T>(method, JSON.parse(key)).then(
      (v) => {
        if (n !== seq.current) return;
        setData(v);
        setError(null);
        setLoading(false);
      },
      (e: unknown) => {
        if (n !== seq.current) return;
        setError(RpcError.from(e));
        setLoading(false);
      },
    );
  }, [rpc, method, key]);
  const topics = (opts.topics ?? []).join(' ');
  useEffect(() => {
    load();
    let timer = 0;
    const later = () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(load, 250);
    };
    const offEvents = topics ? rpc.listen(topics.split(' '), later) : () => {};
    const offState = rpc.onState((s) => s === 'open' && later());
    const every = opts.everyMs ? window.setInterval(load, opts.everyMs) : 0;
    return () => {
      window.clearTimeout(timer);
      window.clearInterval(every);
      offEvents();
      offState();
      seq.current++;
    };
  }, [load, topics, opts.everyMs]);
  return { data, error, loading, reload: load };
}

/** The form key a server field path names: `changes[0].object.size` → `size`. */
export function fieldKey(path: string | undefined): string | undefined {
  if (!path) return undefined;
  const last = path.split('.').pop() ?? path;
  return last.replace(/\[\d+\]$/, '');
}

export interface FormState<V> {
  values: V;
  set: <K extends keyof V>(k: K, v: V[K]) => void;
  errors: Partial<Record<string, string>>;
  top: string | null;
  busy: boolean;
  progress: string | null;
  setProgress: (s: string | null) => void;
  submit: (run: (v: V) => Promise<unknown>, after?: () => void) => (e?: Event) => void;
  reset: () => void;
}

/**
 * Form state. `submit` runs the call; an error naming one of the form's
 * fields (`data.field`) is shown next to that field, any other at the top.
 */
export function useForm<V extends Record<string, unknown>>(initial: V): FormState<V> {
  const [values, setValues] = useState<V>(initial);
  const [errors, setErrors] = useState<Partial<Record<string, string>>>({});
  const [top, setTop] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [progress, setProgress] = useState<string | null>(null);
  const set = <K extends keyof V>(k: K, v: V[K]) => {
    setValues((old) => ({ ...old, [k]: v }));
    setErrors((old) => ({ ...old, [k as string]: undefined }));
  };
  const submit = (run: (v: V) => Promise<unknown>, after?: () => void) => (e?: Event) => {
    e?.preventDefault();
    if (busy) return;
    setBusy(true);
    setErrors({});
    setTop(null);
    run(values).then(
      () => {
        setBusy(false);
        setProgress(null);
        after?.();
      },
      (err: unknown) => {
        const r = RpcError.from(err);
        const k = fieldKey(r.field);
        if (k && k in initial) setErrors({ [k]: r.message });
        else setTop(r.message);
        setBusy(false);
        setProgress(null);
      },
    );
  };
  const reset = () => {
    setValues(initial);
    setErrors({});
    setTop(null);
  };
  return { values, set, errors, top, busy, progress, setProgress, submit, reset };
}

let nextId = 0;
function useId(prefix: string): string {
  const r = useRef('');
  if (!r.current) r.current = `${prefix}-${++nextId}`;
  return r.current;
}

/** A labelled input with its error message (from the server) under it. */
export function Field(props: {
  label: string;
  error?: string;
  hint?: string;
  children: (id: string, describedBy: string | undefined) => ComponentChildren;
}) {
  const id = useId('f');
  const errId = `${id}-err`;
  const hintId = `${id}-hint`;
  const describedBy = [props.error ? errId : '', props.hint ? hintId : ''].filter(Boolean).join(' ') || undefined;
  return (
    <div class={props.error ? 'field invalid' : 'field'}>
      <label for={id}>{props.label}</label>
      {props.children(id, describedBy)}
      {props.hint && (
        <small id={hintId} class="hint">
          {props.hint}
        </small>
      )}
      {props.error && (
        <p id={errId} class="field-error" role="alert">
          {props.error}
        </p>
      )}
    </div>
  );
}

/** A text input bound to one form value. */
export function TextField<V extends Record<string, unknown>>(props: {
  form: FormState<V>;
  name: keyof V & string;
  label: string;
  hint?: string;
  type?: 'text' | 'password';
  placeholder?: string;
  required?: boolean;
  autocomplete?: string;
}) {
  const { form, name } = props;
  return (
    <Field label={props.label} error={form.errors[name]} hint={props.hint}>
      {(id, d) => {
        const common = {
          id,
          name,
          value: String(form.values[name] ?? ''),
          placeholder: props.placeholder,
          required: props.required,
          autocomplete: props.autocomplete ?? 'off',
          'aria-invalid': form.errors[name] ? ('true' as const) : undefined,
          'aria-describedby': d,
          onInput: (e: Event) => form.set(name, (e.currentTarget as HTMLInputElement).value as V[typeof name]),
        };
        return props.type === 'password' ? <input type="password" {...common} /> : <input type="text" {...common} />;
      }}
    </Field>
  );
}

/** A select bound to one form value. */
export function SelectField<V extends Record<string, unknown>>(props: {
  form: FormState<V>;
  name: keyof V & string;
  label: string;
  options: Array<{ value: string; label?: string; disabled?: boolean }>;
  hint?: string;
}) {
  const { form, name, options } = props;
  // Nothing chosen yet (or a choice that is gone): the select shows its
  // first option, and the caller's submit uses that one too.
  const v = String(form.values[name] ?? '');
  const shown = options.some((o) => o.value === v) ? v : (options[0]?.value ?? '');
  return (
    <Field label={props.label} error={form.errors[name]} hint={props.hint}>
      {(id, d) => (
        <select
          id={id}
          name={name}
          value={shown}
          aria-invalid={form.errors[name] ? 'true' : undefined}
          aria-describedby={d}
          onChange={(e) => form.set(name, (e.currentTarget as HTMLSelectElement).value as V[typeof name])}
        >
          {options.map((o) => (
            <option value={o.value} disabled={o.disabled} key={o.value}>
              {o.label ?? o.value}
            </option>
          ))}
        </select>
      )}
    </Field>
  );
}

/** The message at a form's top, for errors that name no field of it. */
export function FormError(props: { message: string | null | undefined }) {
  if (!props.message) return null;
  return (
    <p class="form-error" role="alert">
      {props.message}
    </p>
  );
}

/** A card with a title, for each section of a page. */
export function Section(props: { title: string; children: ComponentChildren; actions?: ComponentChildren; id?: string }) {
  return (
    <section class="card" id={props.id} aria-labelledby={props.id ? `${props.id}-h` : undefined}>
      <div class="card-head">
        <h2 id={props.id ? `${props.id}-h` : undefined}>{props.title}</h2>
        {props.actions}
      </div>
      {props.children}
    </section>
  );
}

/** What a query shows while it has no data: loading, or its error. */
export function Status(props: { q: Query<unknown>; empty?: boolean; emptyText?: string }) {
  const { q } = props;
  if (q.error) return <p class="form-error" role="alert">{q.error.message}</p>;
  if (q.loading && !q.data) return <p class="muted">Loading…</p>;
  if (props.empty) return <p class="muted">{props.emptyText ?? 'None.'}</p>;
  return null;
}

/** A modal dialog (the browser's own `<dialog>`: focus trap, Escape). */
export function Dialog(props: { title: string; onClose: () => void; children: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);
  return (
    <dialog
      ref={ref}
      aria-label={props.title}
      onCancel={(e) => {
        e.preventDefault();
        props.onClose();
      }}
    >
      <h2>{props.title}</h2>
      {props.children}
    </dialog>
  );
}

/**
 * A button that asks first. The dialog says what will happen; its confirm
 * button runs `action` and shows the server's error in the dialog if it
 * fails. Only rendered for admins by its callers.
 */
export function ConfirmButton(props: {
  label: string;
  title: string;
  confirmLabel?: string;
  danger?: boolean;
  children: ComponentChildren;
  action: (progress: (s: string) => void) => Promise<unknown>;
  onDone?: () => void;
  disabled?: boolean;
  small?: boolean;
}) {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<string | null>(null);
  const [progress, setProgress] = useState<string | null>(null);
  const cls = [props.danger ? 'danger' : '', props.small ? 'small' : ''].filter(Boolean).join(' ') || undefined;
  const run = () => {
    setBusy(true);
    setErr(null);
    props.action((s) => setProgress(s)).then(
      () => {
        setBusy(false);
        setOpen(false);
        setProgress(null);
        props.onDone?.();
      },
      (e: unknown) => {
        setBusy(false);
        setProgress(null);
        setErr(RpcError.from(e).message);
      },
    );
  };
  return (
    <>
      <button type="button" class={cls} disabled={props.disabled} onClick={() => setOpen(true)}>
        {props.label}
      </button>
      {open && (
        <Dialog title={props.title} onClose={() => !busy && setOpen(false)}>
          <div class="dialog-body">{props.children}</div>
          <FormError message={err} />
          {progress && (
            <p class="muted" aria-live="polite">
              {progress}
            </p>
          )}
          <div class="buttons">
            <button type="button" class={props.danger ? 'danger' : 'primary'} disabled={busy} onClick={run}>
              {busy ? 'Working…' : (props.confirmLabel ?? props.label)}
            </button>
            <button type="button" disabled={busy} onClick={() => setOpen(false)}>
              Cancel
            </button>
          </div>
        </Dialog>
      )}
    </>
  );
}

/** A yes/no/state badge. */
export function Badge(props: { tone: 'ok' | 'warn' | 'bad' | 'info' | 'muted'; children: ComponentChildren }) {
  return <span class={`badge ${props.tone}`}>{props.children}</span>;
}

/** The tone of a controller phase (heartbeat's names). */
export function phaseTone(phase: string | undefined | null): 'ok' | 'warn' | 'bad' | 'info' | 'muted' {
  switch (phase) {
    case 'normal':
      return 'ok';
    case 'survivor':
    case 'waiting':
    case 'booting':
      return 'warn';
    case 'fencing':
    case 'taking_over':
    case 'fenced':
      return 'bad';
    default:
      return 'muted';
  }
}

/** Splits a list typed by a person: commas, spaces or new lines. */
export function splitList(s: string): string[] {
  return s
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter(Boolean);
}

/**
 * A button that opens a small form in a dialog (resize, snapshot...). The
 * server's validation message lands next to the field it names.
 */
export function FormButton(props: {
  label: string;
  title: string;
  fields: Array<{ name: string; label: string; placeholder?: string; initial?: string; hint?: string }>;
  submitLabel: string;
  run: (v: Record<string, string>) => Promise<unknown>;
  onDone?: () => void;
  children?: ComponentChildren;
}) {
  const [open, setOpen] = useState(false);
  return (
    <>
      <button type="button" class="small" onClick={() => setOpen(true)}>
        {props.label}
      </button>
      {open && (
        <Dialog title={props.title} onClose={() => setOpen(false)}>
          <DialogForm {...props} close={() => setOpen(false)} />
        </Dialog>
      )}
    </>
  );
}

function DialogForm(props: Parameters<typeof FormButton>[0] & { close: () => void }) {
  const initial: Record<string, string> = {};
  for (const f of props.fields) initial[f.name] = f.initial ?? '';
  const form = useForm(initial);
  const submit = form.submit(props.run, () => {
    props.close();
    props.onDone?.();
  });
  return (
    <form onSubmit={submit}>
      {props.children}
      <FormError message={form.top} />
      {props.fields.map((f) => (
        <TextField key={f.name} form={form} name={f.name} label={f.label} placeholder={f.placeholder} hint={f.hint} required />
      ))}
      <div class="buttons">
        <button type="submit" class="primary" disabled={form.busy}>
          {form.busy ? 'Working…' : props.submitLabel}
        </button>
        <button type="button" disabled={form.busy} onClick={props.close}>
          Cancel
        </button>
      </div>
    </form>
  );
}

/** A table that scrolls sideways inside its card: the column headers
 * (`false` drops one, such as Actions for a read_only user), then the rows. */
export function Table(props: { headers: (string | false)[]; children: ComponentChildren }) {
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            {props.headers
              .filter((h): h is string => h !== false)
              .map((h) => (
                <th scope="col" key={h}>
                  {h}
                </th>
              ))}
          </tr>
        </thead>
        <tbody>{props.children}</tbody>
      </table>
    </div>
  );
}

/** A form's submit button (its label while busy) and the job's progress. */
export function SubmitRow(props: { form: { busy: boolean; progress?: string | null }; label: string; busyLabel: string }) {
  return (
    <div class="buttons">
      <button type="submit" class="primary" disabled={props.form.busy}>
        {props.form.busy ? props.busyLabel : props.label}
      </button>
      {props.form.progress && (
        <span class="muted" aria-live="polite">
          {props.form.progress}
        </span>
      )}
    </div>
  );
}
