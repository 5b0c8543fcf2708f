// Login: `auth.login` over HTTP POST, whose answer sets the HttpOnly
// session cookie; the token in the answer is not kept.

import { post, type Session } from '../rpc';
import { FormError, TextField, useForm } from '../ui';

export function LoginPage(props: { notice: string | null; onLogin: (s: Session) => void }) {
  const form = useForm({ user: '', password: '' });
  const submit = form.submit(async (v) => {
    const r = await post<Session & { token?: string }>('auth.login', { user: v.user, password: v.password });
    props.onLogin({ user: r.user, role: r.role, expires_ms: r.expires_ms });
  });
  return (
    <main class="login" id="main">
      <form class="card" onSubmit={submit} aria-labelledby="login-h">
        <h1 id="login-h">Duplex</h1>
        <p class="muted">Log in to manage this storage pair.</p>
        {props.notice && <p class="notice">{props.notice}</p>}
        <FormError message={form.top} />
        <TextField form={form} name="user" label="User" required autocomplete="username" />
        <TextField form={form} name="password" label="Password" type="password" required autocomplete="current-password" />
        <div class="buttons">
          <button type="submit" class="primary" disabled={form.busy}>
            {form.busy ? 'Logging in…' : 'Log in'}
          </button>
        </div>
      </form>
    </main>
  );
}
