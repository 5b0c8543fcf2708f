// The app: session restore (auth.whoami), login, the shell with its
// navigation, and a hash router (`#/pools`), so every page is a plain link
// that works with the keyboard, the back button and a reload.

import { render } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { Rpc, RpcError, post, type ConnState, type Session } from './rpc';
import { Ctx } from './ui';
import { LoginPage } from './pages/login';
import { Dashboard } from './pages/dashboard';
import { DisksPage } from './pages/disks';
import { PoolsPage } from './pages/pools';
import { VolumesPage } from './pages/volumes';
import { ExportsPage, HostGroupsPage, HostsPage, UsersPage } from './pages/objects';
import { AuditPage } from './pages/audit';
import { ClusterPage } from './pages/cluster';

const PAGES = [
  { path: 'dashboard', title: 'Dashboard', view: Dashboard },
  { path: 'cluster', title: 'Cluster', view: ClusterPage },
  { path: 'disks', title: 'Disks', view: DisksPage },
  { path: 'pools', title: 'Pools', view: PoolsPage },
  { path: 'volumes', title: 'Volumes', view: VolumesPage },
  { path: 'exports', title: 'Exports', view: ExportsPage },
  { path: 'hosts', title: 'Hosts', view: HostsPage },
  { path: 'host-groups', title: 'Host groups', view: HostGroupsPage },
  { path: 'users', title: 'Users', view: UsersPage },
  { path: 'audit', title: 'Audit log', view: AuditPage },
];

function currentPath(): string {
  const p = location.hash.replace(/^#\/?/, '').split('?')[0];
  return PAGES.some((x) => x.path === p) ? p : 'dashboard';
}

const rpc = new Rpc();

function App() {
  // undefined: still asking whoami; null: logged out.
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [path, setPath] = useState(currentPath());
  const [conn, setConn] = useState<ConnState>(rpc.state);
  const [menuOpen, setMenuOpen] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);

  useEffect(() => {
    const onHash = () => {
      setPath(currentPath());
      setMenuOpen(false);
      // A new page: keyboard and screen reader users start at its content.
      window.setTimeout(() => document.getElementById('main')?.focus({ preventScroll: true }), 0);
    };
    window.addEventListener('hashchange', onHash);
    const offState = rpc.onState(setConn);
    rpc.onSessionLost = () => {
      rpc.stop();
      setSession(null);
      setNotice('Your session ended. Log in again.');
    };
    // A reload keeps the cookie: ask who it belongs to.
    post<Session>('auth.whoami').then(
      (s) => {
        setSession(s);
        rpc.start();
      },
      (e: unknown) => {
        const err = RpcError.from(e);
        if (!err.sessionLost && err.code !== -32001) setNotice(err.message);
        setSession(null);
      },
    );
    return () => {
      window.removeEventListener('hashchange', onHash);
      offState();
    };
  }, []);

  useEffect(() => {
    const page = PAGES.find((p) => p.path === path);
    document.title = session && page ? `${page.title} · Duplex` : 'Duplex';
  }, [path, session]);

  const ctx = useMemo(
    () => (session ? { rpc, session, canWrite: session.role === 'admin' } : null),
    [session],
  );

  if (session === undefined) return <p class="muted boot">Loading…</p>;
  if (!session || !ctx) {
    return (
      <LoginPage
        notice={notice}
        onLogin={(s) => {
          setNotice(null);
          setSession(s);
          rpc.restart();
        }}
      />
    );
  }

  const logout = () => {
    // Over HTTP, so the answer clears the cookie too.
    post('auth.logout').catch(() => {});
    rpc.stop();
    setSession(null);
  };
  const page = PAGES.find((p) => p.path === path) ?? PAGES[0];
  const View = page.view;
  return (
    <Ctx.Provider value={ctx}>
      <a
        class="skip"
        href="#main"
        onClick={(e) => {
          // The hash is the router's: move focus without navigating.
          e.preventDefault();
          document.getElementById('main')?.focus();
        }}
      >
        Skip to content
      </a>
      <header class="top">
        <button
          type="button"
          class="menu-toggle"
          aria-expanded={menuOpen ? 'true' : 'false'}
          aria-controls="nav"
          onClick={() => setMenuOpen(!menuOpen)}
        >
          Menu
        </button>
        <span class="brand">Duplex</span>
        <span class={`conn ${conn}`} role="status" title="Connection to the controller">
          {conn === 'open' ? 'live' : conn === 'connecting' ? 'reconnecting…' : 'offline'}
        </span>
        <span class="who">
          {session.user} <span class="muted">({session.role === 'admin' ? 'admin' : 'read-only'})</span>
        </span>
        <button type="button" class="small" onClick={logout}>
          Log out
        </button>
      </header>
      <div class="shell">
        <nav id="nav" class={menuOpen ? 'open' : ''} aria-label="Pages">
          <ul>
            {PAGES.map((p) => (
              <li key={p.path}>
                <a href={`#/${p.path}`} aria-current={p.path === path ? 'page' : undefined}>
                  {p.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <main id="main" tabIndex={-1}>
          <h1>{page.title}</h1>
          <View key={page.path} />
        </main>
      </div>
    </Ctx.Provider>
  );
}

const root = document.getElementById('app');
if (root) {
  root.textContent = '';
  render(<App />, root);
}
