/**
 * The shell: the login form until there is a session, then the header (user, Log out), the
 * Agents and Images views (hash links, so the back button and a reload keep the view) and the
 * one error line (role="alert") every view reports into.
 */
import { useCallback, useEffect, useMemo, useState } from 'preact/hooks';
import { isSentinelApiError, type SentinelClient } from '@sentinel/api-client/browser';
import { describeError, hasStoredToken, makeClient, saveToken } from './api.js';
import { AgentsView } from './agents.js';
import { ImagesView } from './images.js';
import { Login } from './login.js';

export type ReportError = (err: unknown) => void;

type View = 'agents' | 'images';

function viewOfHash(): View {
  return location.hash === '#images' ? 'images' : 'agents';
}

export function App() {
  const client = useMemo<SentinelClient>(() => makeClient(), []);
  const [user, setUser] = useState<string | undefined>(undefined);
  const [checking, setChecking] = useState(hasStoredToken());
  const [error, setError] = useState<string | undefined>(undefined);
  const [view, setView] = useState<View>(viewOfHash());

  const report = useCallback<ReportError>((err) => {
    setError(describeError(err));
    // A REST call refused with 401: the session ended (expired or revoked), so back to the login
    // form, keeping the alert that says why.
    if (isSentinelApiError(err) && err.status === 401 && client.transport.credential !== undefined) {
      client.transport.setToken(undefined);
      saveToken(undefined);
      setUser(undefined);
    }
  }, []);

  useEffect(() => {
    const onHash = () => setView(viewOfHash());
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  // A token kept by this tab: check it is still good before showing the console.
  useEffect(() => {
    if (!checking) return;
    client
      .me()
      .then((me) => setUser(me.username))
      .catch(() => {
        client.transport.setToken(undefined);
        saveToken(undefined);
      })
      .finally(() => setChecking(false));
  }, []);

  const onLogin = async (username: string, password: string) => {
    setError(undefined);
    try {
      const result = await client.login(username, password);
      saveToken(result.token);
      setUser(result.username);
    } catch (err) {
      report(err);
    }
  };

  const onLogout = async () => {
    setError(undefined);
    try {
      await client.logout();
    } catch (err) {
      // The token is forgotten here either way; a server that could not revoke it says why.
      client.transport.setToken(undefined);
      report(err);
    }
    saveToken(undefined);
    setUser(undefined);
  };

  return (
    <div class="shell">
      <header class="top">
        <h1>SentinelStacks</h1>
        {user && (
          <nav aria-label="Views">
            <a href="#agents" aria-current={view === 'agents' ? 'page' : undefined}>
              Agents
            </a>
            <a href="#images" aria-current={view === 'images' ? 'page' : undefined}>
              Images
            </a>
          </nav>
        )}
        {user && (
          <div class="who">
            <span>{user}</span>
            <button type="button" onClick={() => void onLogout()}>
              Log out
            </button>
          </div>
        )}
      </header>
      {error && (
        <div class="alert">
          {/* The alert holds only the words, so its text is exactly "<message> (<code>)". */}
          <span role="alert">{error}</span>
          <button type="button" class="link" aria-label="Dismiss error" onClick={() => setError(undefined)}>
            ×
          </button>
        </div>
      )}
      <main>
        {checking ? (
          <p>Loading…</p>
        ) : !user ? (
          <Login onLogin={onLogin} />
        ) : view === 'images' ? (
          <ImagesView client={client} report={report} />
        ) : (
          <AgentsView client={client} report={report} />
        )}
      </main>
    </div>
  );
}
