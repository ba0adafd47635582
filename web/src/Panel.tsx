import { useCallback, useEffect, useRef, useState } from "react";
import { api, storedToken, type CardRef, type CardType, type Me } from "./api";
import { CardView } from "./CardView";
import { DialPad } from "./DialPad";
import { EventStream, keepOpenFrom, type CallEvent } from "./events";
import { History } from "./History";
import { t, type Key } from "./i18n";
import { askPermissions, notifyCall } from "./permissions";
import { RingingCard, type Ringing } from "./RingingCard";
import type { Route } from "./route";
import { Softphone, type PhoneCall, type PhoneView } from "./softphone";
import { StatusBadge, phoneProblem } from "./StatusBadge";

interface Props {
  me: Me;
  route: Route;
  onSignedOut: () => void;
}

const digits = (value: string) => value.replace(/\D/g, "");

// The browser's session that is this ringing call: the one from the same
// number, else the only one ringing.
function sessionFor(ringing: Ringing, calls: PhoneCall[]): PhoneCall | undefined {
  const waiting = calls.filter((call) => call.incoming && !call.established);
  const number = digits(ringing.number);
  return (
    waiting.find((call) => number !== "" && digits(call.remote).endsWith(number.slice(-7))) ??
    (waiting.length === 1 ? waiting[0] : undefined)
  );
}

export function Panel({ me, route, onSignedOut }: Props) {
  const [phone, setPhone] = useState<PhoneView>({ state: "offline", problem: null, reason: null, calls: [] });
  const [problems, setProblems] = useState<Key[]>([]);
  const [ringing, setRinging] = useState<Ringing[]>([]);
  const [eventsOnline, setEventsOnline] = useState<boolean | null>(null);
  const [historyVersion, setHistoryVersion] = useState(0);
  const softphone = useRef<Softphone | null>(null);

  // Sign-in: permissions, the softphone, the live events.
  useEffect(() => {
    let cancelled = false;
    void askPermissions().then((found) => {
      if (!cancelled) setProblems(found);
    });
    const phoneInstance = new Softphone(setPhone);
    softphone.current = phoneInstance;
    // One softphone per user and browser: the first tab holds a lock while
    // it lives, and rings; the others show the calls and wait for it.
    const leaving = new AbortController();
    let release: (() => void) | null = null;
    if (navigator.locks) {
      phoneInstance.waiting();
      navigator.locks
        .request(`callbridge.softphone.${me.id}`, { signal: leaving.signal }, () => {
          if (cancelled) return undefined;
          void phoneInstance.start();
          return new Promise<void>((resolve) => {
            release = resolve;
          });
        })
        .catch(() => undefined); // aborted: the tab signed out or closed
    } else {
      void phoneInstance.start();
    }
    const token = storedToken() ?? "";
    const stream = new EventStream(token, (event) => onEvent(event), setEventsOnline, onSignedOut);
    stream.start();
    return () => {
      cancelled = true;
      leaving.abort();
      (release as (() => void) | null)?.();
      stream.stop();
      phoneInstance.stop();
      softphone.current = null;
    };
    // The handlers read state through setters only: one subscription per sign-in.
  }, []);

  const onEvent = (event: CallEvent) => {
    const callId = event.call_id;
    if (event.type === "reset") {
      setRinging([]);
      setHistoryVersion((v) => v + 1);
      return;
    }
    if (callId === null) return;
    switch (event.type) {
      case "ringing": {
        const incoming =
          event.direction === "incoming" ||
          (event.direction === "internal" && event.employee?.id !== me.employee_id);
        if (!incoming) return;
        const number = event.client_number ?? event.caller_number ?? "";
        const matches = (event.matches ?? []) as CardRef[];
        const colleague = event.direction === "internal" ? event.employee?.name ?? number : null;
        setRinging((list) =>
          list.some((r) => r.callId === callId)
            ? list
            : [
                ...list,
                { callId, seq: event.seq, number, direction: event.direction ?? "", matches, linked: null, colleague, answered: false, at: Date.now() },
              ],
        );
        const who = matches[0]?.name ?? colleague ?? number;
        notifyCall(t("incomingCall"), t("notificationBody", { who }), callId);
        return;
      }
      case "identified":
        setRinging((list) =>
          list.map((r) => (r.callId === callId ? { ...r, matches: (event.matches ?? []) as CardRef[] } : r)),
        );
        return;
      case "answered":
        setRinging((list) => list.map((r) => (r.callId === callId ? { ...r, answered: true } : r)));
        return;
      case "missed":
      case "ended":
        setRinging((list) => list.filter((r) => r.callId !== callId));
        setHistoryVersion((v) => v + 1);
        return;
      default:
        return;
    }
  };

  // A reload replays the events of the calls still shown.
  useEffect(() => {
    keepOpenFrom(ringing.length === 0 ? null : Math.min(...ringing.map((r) => r.seq)));
  }, [ringing]);

  const registered = phone.state === "registered";
  const established = phone.calls.find((call) => call.established);

  const answer = useCallback(
    (r: Ringing) => {
      const call = sessionFor(r, phone.calls);
      if (call && softphone.current) softphone.current.answer(call);
    },
    [phone.calls],
  );

  const hangUp = useCallback(
    (r: Ringing | null) => {
      const instance = softphone.current;
      if (!instance) return;
      const call = r === null ? established ?? phone.calls[0] : sessionFor(r, phone.calls) ?? established;
      if (call) instance.hangUp(call);
    },
    [phone.calls, established],
  );

  // Alt+A answers the first ringing call; Alt+H hangs up (or declines).
  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      if (!event.altKey || event.ctrlKey || event.metaKey) return;
      if (event.code === "KeyA") {
        const first = ringing.find((r) => !r.answered);
        if (first) {
          event.preventDefault();
          answer(first);
        }
      } else if (event.code === "KeyH") {
        event.preventDefault();
        hangUp(established ? null : ringing.find((r) => !r.answered) ?? null);
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [ringing, answer, hangUp, established]);

  async function signOut() {
    try {
      await api.logout();
    } catch {
      // The token may be gone already: signed out either way.
    }
    onSignedOut();
  }

  const cardMatch = /^\/card\/(contact|account|lead)\/(\d+)$/.exec(route.path);
  const onHistory = route.path === "/history";

  return (
    <div className="panel" data-events={eventsOnline === null ? "connecting" : eventsOnline ? "online" : "offline"}>
      <header className="top">
        <strong className="brand">{t("appName")}</strong>
        <StatusBadge phone={phone} />
        <span className="who" title={t("signedInAs", { name: me.username })}>
          {me.employee_name ?? me.username}
        </span>
        <button type="button" className="ghost small" onClick={() => void signOut()}>
          {t("signOut")}
        </button>
      </header>
      <nav className="tabs" aria-label={t("appName")}>
        <a href="#/" aria-current={!onHistory && !cardMatch ? "page" : undefined}>
          {t("panel")}
        </a>
        <a href="#/history" aria-current={onHistory ? "page" : undefined}>
          {t("history")}
        </a>
      </nav>
      {problems.length > 0 && (
        <ul className="problems" role="alert">
          {problems.map((key) => (
            <li key={key}>{t(key)}</li>
          ))}
        </ul>
      )}
      {phoneProblem(phone) && (
        <p className="notice" role="status">
          {phoneProblem(phone)}
        </p>
      )}
      {eventsOnline === false && (
        <p className="notice" role="status">
          {t("eventsOffline")}
        </p>
      )}
      <div className="ringing-list" aria-live="assertive">
        {ringing.map((r) => {
          const session = sessionFor(r, phone.calls);
          return (
            <RingingCard
              key={r.callId}
              ringing={r}
              canAnswer={registered && session !== undefined}
              inBrowser={established !== undefined}
              onAnswer={() => answer(r)}
              onDecline={() => hangUp(r)}
              onLinked={(card) =>
                setRinging((list) => list.map((x) => (x.callId === r.callId ? { ...x, linked: card, matches: [card] } : x)))
              }
            />
          );
        })}
      </div>
      <main>
        {cardMatch ? (
          <CardView
            type={cardMatch[1] as CardType}
            id={Number(cardMatch[2])}
            onCall={registered ? (number) => softphone.current?.call(number) : null}
          />
        ) : onHistory ? (
          <History me={me} version={historyVersion} />
        ) : (
          <>
            <DialPad
              enabled={registered}
              inCall={established !== undefined}
              onCall={(number) => softphone.current?.call(number)}
              onHangUp={() => hangUp(null)}
            />
            <p className="muted small-print">{t("shortcuts")}</p>
          </>
        )}
      </main>
    </div>
  );
}
