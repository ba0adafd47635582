import { useCallback, useEffect, useState } from "react";
import { ApiError, api, storeToken, storedToken, type Me } from "./api";
import { forgetSeen } from "./events";
import { Panel } from "./Panel";
import { go, useRoute } from "./route";
import { Setup } from "./Setup";
import { SignIn } from "./SignIn";

export function App() {
  const route = useRoute();
  const [me, setMe] = useState<Me | null>(null);
  const [checking, setChecking] = useState(storedToken() !== null);
  const [notice, setNotice] = useState<string | null>(null);

  // A reload keeps the tab's token: find out who it signs in.
  useEffect(() => {
    if (storedToken() === null) return;
    api
      .me()
      .then(setMe)
      .catch((error: unknown) => {
        if (error instanceof ApiError && error.status === 401) storeToken(null);
      })
      .finally(() => setChecking(false));
  }, []);

  const signedOut = useCallback(() => {
    storeToken(null);
    forgetSeen();
    setMe(null);
  }, []);

  if (route.path === "/setup" && me === null) {
    return (
      <Setup
        token={route.params.get("token") ?? ""}
        onDone={(message) => {
          setNotice(message);
          // The link is spent: out of the address bar and the tab's history.
          go("/", true);
        }}
      />
    );
  }
  if (checking) return null;
  if (me === null) return <SignIn notice={notice} onSignedIn={setMe} />;
  return <Panel me={me} route={route} onSignedOut={signedOut} />;
}
