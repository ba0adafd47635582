import { useEffect, useState, type FormEvent } from "react";
import { ApiError, api, storeToken, type Me } from "./api";
import { t } from "./i18n";

interface Props {
  notice: string | null;
  onSignedIn: (me: Me) => void;
}

export function SignIn({ notice, onSignedIn }: Props) {
  const [login, setLogin] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [setupNeeded, setSetupNeeded] = useState(false);

  useEffect(() => {
    api
      .setupState()
      .then((state) => setSetupNeeded(state.needed))
      .catch(() => undefined);
  }, []);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const { token } = await api.login(login, password);
      storeToken(token);
      onSignedIn(await api.me());
    } catch (failure) {
      storeToken(null);
      if (failure instanceof ApiError && failure.status === 429) {
        setError(t("tooManyAttempts", { seconds: failure.retryAfter ?? 60 }));
      } else if (failure instanceof ApiError && failure.status < 500) {
        setError(t("wrongLogin"));
      } else {
        setError(t("serverUnreachable"));
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="narrow">
      <h1>{t("appName")}</h1>
      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      {setupNeeded && (
        <p className="notice" role="status">
          {t("setupNeeded")}
        </p>
      )}
      <form onSubmit={submit} aria-label={t("signIn")}>
        <label>
          {t("login")}
          <input
            name="login"
            autoComplete="username"
            value={login}
            required
            maxLength={64}
            onChange={(e) => setLogin(e.target.value)}
          />
        </label>
        <label>
          {t("password")}
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            value={password}
            required
            maxLength={1024}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? t("signingIn") : t("signIn")}
        </button>
      </form>
    </main>
  );
}
