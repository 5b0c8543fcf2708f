// The JSON-RPC 2.0 client: HTTP POST for the session (login, whoami,
// logout: the endpoint sets and clears its HttpOnly cookie on those
// answers), one WebSocket for everything else, with reconnect and event
// subscriptions. The session token never reaches JavaScript storage: the
// browser sends the cookie on the WebSocket upgrade.

/** Error codes of docs/rpc-protocol.md. */
export const Code = {
  InvalidParams: -32602,
  Unauthorized: -32001,
  NotFound: -32002,
  Conflict: -32003,
  Unavailable: -32007,
} as const;

export interface ErrorData {
  kind?: string;
  field?: string;
  reason?: string;
  [k: string]: unknown;
}

/** A JSON-RPC error (or a lost connection, as `unavailable`). */
export class RpcError extends Error {
  constructor(
    public code: number,
    message: string,
    public data: ErrorData = {},
  ) {
    super(message);
  }
  /** The parameter the server blames (`data.field`), if any. */
  get field(): string | undefined {
    return typeof this.data.field === 'string' ? this.data.field : undefined;
  }
  /** No session, or it ended: the user must log in again. */
  get sessionLost(): boolean {
    return this.code === Code.Unauthorized && this.data.reason === 'session';
  }
  static from(e: unknown): RpcError {
    if (e instanceof RpcError) return e;
    if (e && typeof e === 'object' && 'code' in e && 'message' in e) {
      const o = e as { code: number; message: string; data?: ErrorData };
      return new RpcError(o.code, o.message, o.data && typeof o.data === 'object' ? o.data : {});
    }
    return new RpcError(Code.Unavailable, e instanceof Error ? e.message : String(e));
  }
}

/** An event as the router publishes it (`event.notify`'s result). */
export interface DuplexEvent {
  topic: string;
  data: unknown;
  controller?: string;
  source?: string;
  time_ms?: number;
  action_id?: string;
}

export interface Session {
  user: string;
  role: 'admin' | 'read_only';
  expires_ms: number;
}

/** One call over HTTP POST to the endpoint itself (same origin). */
export async function post<T>(method: string, params?: unknown): Promise<T> {
  let resp: Response;
  try {
    resp = await fetch('/', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      credentials: 'same-origin',
      cache: 'no-store',
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: params ?? {} }),
    });
  } catch (e) {
    throw new RpcError(Code.Unavailable, `cannot reach the controller: ${String(e)}`);
  }
  let body: { result?: T; error?: unknown };
  try {
    body = await resp.json();
  } catch {
    throw new RpcError(Code.Unavailable, `the controller answered HTTP ${resp.status}`);
  }
  if (body.error) throw RpcError.from(body.error);
  return body.result as T;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: RpcError) => void; timer: number };
type Listener = { patterns: string[]; fn: (e: DuplexEvent) => void };
export type ConnState = 'connecting' | 'open' | 'closed';

/** A topic pattern as the router's: exact, `prefix.*`, or `*`. */
export function topicMatches(pattern: string, topic: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('.*')) return topic.startsWith(pattern.slice(0, -1));
  return pattern === topic;
}

/**
 * The WebSocket connection. Calls made while it is down wait for it (up to
 * their timeout). Events: the connection holds one subscription to every
 * topic and hands each event to the local listeners whose patterns match,
 * so pages add and drop listeners without a round trip each.
 */
export class Rpc {
  private ws: WebSocket | null = null;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private waiting: Array<() => void> = [];
  private listeners = new Set<Listener>();
  private stateListeners = new Set<(s: ConnState) => void>();
  private subscription: string | number | null = null;
  private backoff = 500;
  private stopped = true;
  private retryTimer = 0;
  state: ConnState = 'closed';
  /** Called when a call answers that the session is gone. */
  onSessionLost: () => void = () => {};

  start(): void {
    this.stopped = false;
    this.open();
  }

  /** Closes for good (logout): pending calls fail, no reconnect. */
  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.retryTimer);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      // Drop the subscription first (closing ends it too, but this tells
      // the endpoint at once and frees its router connection).
      if (ws.readyState === WebSocket.OPEN && this.subscription !== null) {
        ws.send(JSON.stringify({ jsonrpc: '2.0', id: this.nextId++, method: 'event.unsubscribe', params: [this.subscription] }));
      }
      ws.onclose = null;
      ws.onmessage = null;
      // Closing a socket still connecting makes the browser log an error:
      // let it open, then close it.
      if (ws.readyState === WebSocket.CONNECTING) ws.onopen = () => ws.close();
      else ws.close();
    }
    this.subscription = null;
    this.failAll('the connection was closed');
    this.setState('closed');
  }

  /** Reopens at once (after a new login: the new cookie goes on the upgrade). */
  restart(): void {
    this.stop();
    this.start();
  }

  onState(fn: (s: ConnState) => void): () => void {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }

  /** Listens to events whose topic matches one of `patterns`. */
  listen(patterns: string[], fn: (e: DuplexEvent) => void): () => void {
    const l = { patterns, fn };
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  async call<T>(method: string, params?: unknown, timeoutMs = 35_000): Promise<T> {
    try {
      if (method === 'config.get') return (await this.configGetAll(params, timeoutMs)) as T;
      return await this.send<T>(method, params, timeoutMs);
    } catch (e) {
      const err = RpcError.from(e);
      if (err.sessionLost) this.onSessionLost();
      throw err;
    }
  }

  /**
   * `config.get` of a whole kind (or everything) read page by page, as
   * duplexctl and the daemons read it, so lists of any size load; one
   * object (`name`) is asked as it is. Pages of one read share one
   * version: when it moves, the read starts again.
   */
  private async configGetAll(params: unknown, timeoutMs: number): Promise<unknown> {
    const p = (params ?? {}) as Record<string, unknown>;
    if ('name' in p || 'page' in p) return this.send('config.get', p, timeoutMs);
    type Page = { version: number; config: Record<string, unknown>; next?: string | null };
    for (let tries = 0; tries < 8; tries++) {
      const whole = await this.send<Page>('config.get', { ...p, page: true }, timeoutMs);
      let next = whole.next ?? null;
      let settled = true;
      while (next !== null) {
        const page = await this.send<Page>('config.get', { ...p, page: true, after: next }, timeoutMs);
        if (page.version !== whole.version) {
          settled = false;
          break;
        }
        for (const [kind, v] of Object.entries(page.config)) {
          const into = whole.config[kind];
          if (Array.isArray(into) && Array.isArray(v)) into.push(...v);
          else if (v !== null) whole.config[kind] = v;
        }
        next = page.next ?? null;
      }
      if (settled) {
        delete whole.next;
        return whole;
      }
    }
    throw new RpcError(Code.Unavailable, 'the configuration changed while it was read, 8 times in a row');
  }

  private async send<T>(method: string, params: unknown, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    if (this.state !== 'open') await this.untilOpen(timeoutMs);
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      throw new RpcError(Code.Unavailable, 'not connected to the controller');
    }
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = window.setTimeout(
        () => {
          this.pending.delete(id);
          reject(new RpcError(Code.Unavailable, `${method}: no answer in ${Math.round(timeoutMs / 1000)} s`));
        },
        Math.max(1, deadline - Date.now()),
      );
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params: params ?? {} }));
    });
  }

  private untilOpen(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = window.setTimeout(() => {
        this.waiting = this.waiting.filter((w) => w !== go);
        reject(new RpcError(Code.Unavailable, 'not connected to the controller'));
      }, timeoutMs);
      const go = () => {
        window.clearTimeout(t);
        resolve();
      };
      this.waiting.push(go);
    });
  }

  private setState(s: ConnState): void {
    if (s === this.state) return;
    this.state = s;
    for (const fn of this.stateListeners) fn(s);
  }

  private failAll(why: string): void {
    for (const [, p] of this.pending) {
      window.clearTimeout(p.timer);
      p.reject(new RpcError(Code.Unavailable, why));
    }
    this.pending.clear();
  }

  private open(): void {
    if (this.stopped) return;
    this.setState('connecting');
    const ws = new WebSocket(`wss://${location.host}/`);
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.backoff = 500;
      this.subscription = null;
      this.setState('open');
      const w = this.waiting;
      this.waiting = [];
      for (const go of w) go();
      // One subscription for every topic; the listeners filter.
      this.send<string | number>('event.subscribe', { topics: ['*'] }, 10_000).then(
        (id) => {
          if (ws === this.ws) this.subscription = id;
        },
        (e: unknown) => console.warn('event subscription refused:', RpcError.from(e).message),
      );
    };
    ws.onmessage = (m) => this.receive(String(m.data));
    ws.onclose = () => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.failAll('the connection to the controller was lost');
      if (this.stopped) return;
      this.setState('connecting');
      // Back off (0.5 s doubling to 10 s) so a controller that restarts
      // is not hammered, and a short blip costs half a second.
      this.retryTimer = window.setTimeout(() => this.open(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 10_000);
    };
  }

  private receive(text: string): void {
    let msg: {
      id?: number;
      result?: unknown;
      error?: unknown;
      method?: string;
      params?: { subscription?: string | number; result?: DuplexEvent };
    };
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg.method === 'event.notify' && msg.params?.result) {
      this.dispatch(msg.params.result);
      return;
    }
    if (typeof msg.id !== 'number') return;
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    window.clearTimeout(p.timer);
    if (msg.error) p.reject(RpcError.from(msg.error));
    else p.resolve(msg.result);
  }

  private dispatch(e: DuplexEvent): void {
    for (const l of [...this.listeners]) {
      if (l.patterns.some((p) => topicMatches(p, e.topic))) {
        try {
          l.fn(e);
        } catch (err) {
          console.warn('event listener failed:', err);
        }
      }
    }
  }
}

/** A job's state as `job.get`/`job.wait` answer it. */
export interface Job {
  job: string;
  controller: string;
  method: string;
  caller: string;
  state: 'running' | 'succeeded' | 'failed';
  started_ms: number;
  ended_ms?: number | null;
  progress?: { topic: string; data: unknown; time_ms: number } | null;
  result?: unknown;
  error?: unknown;
}

/**
 * Runs a method marked `job` (pool.create, cluster.failover...) the way
 * duplexctl does: `job.start`, then `job.wait` until it ends, reporting
 * progress. A failed job throws its method's error, `data.field` and all,
 * so forms show it next to the field like a direct call's.
 */
export async function runJob<T>(
  rpc: Rpc,
  method: string,
  params: unknown,
  onProgress?: (j: Job) => void,
  limitMs = 16 * 60_000,
): Promise<T> {
  const { job } = await rpc.call<{ job: string }>('job.start', { method, params });
  const until = Date.now() + limitMs;
  for (;;) {
    let j: Job;
    try {
      j = await rpc.call<Job>('job.wait', { job, timeout_ms: 10_000 }, 20_000);
    } catch (e) {
      // The job runs on without us: a dropped connection only means
      // asking again once it is back.
      const err = RpcError.from(e);
      if (err.code !== Code.Unavailable || Date.now() > until) throw err;
      await new Promise((r) => window.setTimeout(r, 1000));
      continue;
    }
    onProgress?.(j);
    if (j.state === 'succeeded') return j.result as T;
    if (j.state === 'failed') {
      const e = j.error;
      if (e && typeof e === 'object' && 'message' in e) throw RpcError.from(e);
      throw new RpcError(Code.Unavailable, `${method} failed: ${JSON.stringify(e)}`);
    }
    if (Date.now() > until) throw new RpcError(Code.Unavailable, `${method}: still running after ${limitMs / 60000} min (job ${job})`);
  }
}
