/** The login form: "Username", "Password", "Log in". */
import { useState } from 'preact/hooks';

export function Login({ onLogin }: { onLogin: (username: string, password: string) => Promise<void> }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  return (
    <form
      class="card login"
      onSubmit={(e) => {
        e.preventDefault();
        setBusy(true);
        void onLogin(username, password).finally(() => setBusy(false));
      }}
    >
      <h2>Log in</h2>
      <label>
        Username
        <input name="username" autocomplete="username" required value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
      </label>
      <label>
        Password
        <input name="password" type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
      </label>
      <button type="submit" disabled={busy}>
        Log in
      </button>
    </form>
  );
}
