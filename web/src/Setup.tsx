import { useState, type FormEvent } from "react";
import { ApiError, api } from "./api";
import { t } from "./i18n";

interface Props {
  token: string;
  onDone: (message: string) => void;
}

export function Setup({ token, onDone }: Props) {
  const [login, setLogin] = useState("admin");
  const [password, setPassword] = useState("");
  const [repeat, setRepeat] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (password !== repeat) {
      setError(t("setupMismatch"));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await api.setup(token, login, password);
      onDone(t("setupDone"));
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 409) onDone(t("setupExists"));
      else if (failure instanceof ApiError && failure.status === 403) setError(t("setupBadToken"));
      else if (failure instanceof ApiError && failure.status === 429)
        setError(t("tooManyAttempts", { seconds: failure.retryAfter ?? 60 }));
      else if (failure instanceof ApiError) setError(`${failure.field ?? ""}: ${failure.detail}`);
      else setError(t("serverUnreachable"));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="narrow">
      <h1>{t("setupTitle")}</h1>
      <p>{t("setupIntro")}</p>
      <form onSubmit={submit} aria-label={t("setupTitle")}>
        <label>
          {t("login")}
          <input
            name="login"
            autoComplete="username"
            value={login}
            required
            maxLength={64}
            pattern="[!-~]+"
            onChange={(e) => setLogin(e.target.value)}
          />
        </label>
        <label>
          {t("password")}
          <input
            name="password"
            type="password"
            autoComplete="new-password"
            value={password}
            required
            minLength={8}
            maxLength={1024}
            aria-describedby="password-hint"
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        <small id="password-hint">{t("setupPasswordHint")}</small>
        <label>
          {t("setupRepeat")}
          <input
            name="repeat"
            type="password"
            autoComplete="new-password"
            value={repeat}
            required
            minLength={8}
            maxLength={1024}
            onChange={(e) => setRepeat(e.target.value)}
          />
        </label>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy || token === ""}>
          {t("setupCreate")}
        </button>
      </form>
    </main>
  );
}
