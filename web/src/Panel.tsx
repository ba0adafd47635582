import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError, api, storedToken, type CardRef, type CardType, type Me } from "./api";
import { CardView } from "./CardView";
import { DialPad } from "./DialPad";
import { EventStream, keepOpenFrom, type CallEvent } from "./events";
import { History } from "./History";
import { InCall } from "./InCall";
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

// The browser's session that is this call: of the same direction, with the
// other party's number; while it rings, else the only one ringing. An
// answered call is matched by its number alone: the only session left may
// be another call's (this one went to the desk phone).
function sessionFor(shown: Ringing, calls: PhoneCall[]): PhoneCall | undefined {
  const candidates = calls.filter(
    (call) => call.incoming === !shown.outgoing && (shown.answered || !call.established),
  );
  const number = digits(shown.number).slice(-7);
  return (
    candidates.find((call) => number !== "" && digits(call.remote).endsWith(number)) ??
    (!shown.answered && candidates.length === 1 ? candidates[0] : undefined)
  );
}

// The calls this tab's softphone carried, kept across a reload: one still
// live after it lost its audio with the page, and is reported so.
const BROWSER_CALLS_KEY = "callbridge.browser-calls";

function browserCallsBefore(): Set<string> {
  try {
    const raw = JSON.parse(sessionStorage.getItem(BROWSER_CALLS_KEY) ?? "[]") as unknown;
    return new Set(Array.isArray(raw) ? raw.filter((id): id is string => typeof id === "string") : []);
  } catch {
    return new Set();
  }
}

function rememberBrowserCalls(ids: Iterable<string>): void {
  sessionStorage.setItem(BROWSER_CALLS_KEY, JSON.stringify([...ids].slice(-20)));
}

// The side ("caller" or "callee") of the signed-in employee in a shown call.
const sideOf = (shown: Ringing) => (shown.outgoing ? "caller" : "callee");

export function Panel({ me, route, onSignedOut }: Props) {
  const [phone, setPhone] = useState<PhoneView>({ state: "offline", problem: null, reason: null, calls: [] });
  const [problems, setProblems] = useState<Key[]>([]);
  const [ringing, setRinging] = useState<Ringing[]>([]);
  const [eventsOnline, setEventsOnline] = useState<boolean | null>(null);
  const [historyVersion, setHistoryVersion] = useState(0);
  const softphone = useRef<Softphone | null>(null);
  // Calls the softphone carried before this page was loaded (a reload);
  // and the ones it carries now.
  const before = useRef<Set<string>>(browserCallsBefore());
  const carried = useRef<Set<string>>(new Set());
  const [endedByReload, setEndedByReload] = useState<string[]>([]);
  // What a screen reader is told at once: a call that starts ringing.
  const [announcement, setAnnouncement] = useState("");

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
        const mine = event.employee?.id === me.employee_id;
        const outgoing = event.direction === "outgoing" || (event.direction === "internal" && mine);
        const number = outgoing
          ? event.client_number ?? event.callee_number ?? ""
          : event.client_number ?? event.caller_number ?? "";
        const matches = (event.matches ?? []) as CardRef[];
        const colleague =
          event.direction === "internal" && !outgoing ? event.employee?.name ?? number : null;
        setRinging((list) =>
          list.some((r) => r.callId === callId)
            ? list
            : [
                ...list,
                {
                  callId,
                  seq: event.seq,
                  number,
                  direction: event.direction ?? "",
                  outgoing,
                  matches,
                  linked: null,
                  colleague,
                  answered: false,
                  answeredAt: null,
                  held: false,
                  at: Date.now(),
                },
              ],
        );
        if (!outgoing) {
          const who = matches[0]?.name ?? colleague ?? number;
          notifyCall(t("incomingCall"), t("notificationBody", { who }), callId);
          setAnnouncement(t("callFrom", { who }));
        }
        return;
      }
      case "identified":
        setRinging((list) =>
          list.map((r) => (r.callId === callId ? { ...r, matches: (event.matches ?? []) as CardRef[] } : r)),
        );
        return;
      case "answered": {
        const answeredAt = Date.parse(event.at);
        setRinging((list) =>
          list.map((r) =>
            r.callId === callId
              ? { ...r, answered: true, answeredAt: Number.isFinite(answeredAt) ? answeredAt : Date.now() }
              : r,
          ),
        );
        return;
      }
      case "held":
      case "resumed":
        setRinging((list) =>
          list.map((r) => (r.callId === callId && event.side === sideOf(r) ? { ...r, held: event.type === "held" } : r)),
        );
        return;
      case "missed":
      case "ended":
        setRinging((list) => {
          const gone = list.find((r) => r.callId === callId);
          if (gone && before.current.has(callId) && !carried.current.has(callId)) {
            // Replayed after a reload: the page's end took the call with it.
            const who = gone.linked?.name ?? gone.matches[0]?.name ?? gone.colleague ?? gone.number;
            setEndedByReload((notices) => [...notices, who]);
          }
          return list.filter((r) => r.callId !== callId);
        });
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

  // Which shown calls are this tab's softphone's: remembered across a reload.
  useEffect(() => {
    let changed = false;
    for (const r of ringing) {
      if (r.answered && !carried.current.has(r.callId) && sessionFor(r, phone.calls)?.established) {
        carried.current.add(r.callId);
        changed = true;
      }
    }
    if (changed) rememberBrowserCalls(carried.current);
  }, [ringing, phone.calls]);

  // Answered before the reload in this tab's softphone, and no session now.
  const dropped = (r: Ringing) =>
    r.answered && before.current.has(r.callId) && !carried.current.has(r.callId) && sessionFor(r, phone.calls) === undefined;

  const answer = useCallback(
    (r: Ringing) => {
      const call = sessionFor(r, phone.calls);
      if (call && softphone.current) softphone.current.answer(call);
    },
    [phone.calls],
  );

  // Decline or hang up `r` (null: the browser's call in progress): in the
  // softphone when it holds the call, else through the API (a desk phone's
  // call, or one a reload dropped).
  const hangUp = useCallback(
    async (r: Ringing | null): Promise<void> => {
      const instance = softphone.current;
      const call = r === null ? established ?? phone.calls[0] : sessionFor(r, phone.calls);
      if (call && instance) {
        instance.hangUp(call);
      } else if (r !== null && r.answered) {
        try {
          await api.hangUp(r.callId);
        } catch (failure) {
          // Over already: its `ended` is on its way. Anything else is said.
          if (!(failure instanceof ApiError && failure.status === 409)) throw failure;
        }
      }
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
        void hangUp(established ? null : ringing.find((r) => r.answered) ?? ringing.find((r) => !r.answered) ?? null).catch(
          () => undefined, // the card's own Hang up says why
        );
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
      {endedByReload.map((who, index) => (
        <p className="notice" role="status" key={index}>
          {t("endedByReload", { who })}{" "}
          <button type="button" className="ghost small" onClick={() => setEndedByReload((list) => list.filter((_, i) => i !== index))}>
            {t("dismiss")}
          </button>
        </p>
      ))}
      <p className="sr-only" aria-live="assertive">
        {announcement}
      </p>
      <div className="ringing-list">
        {ringing.map((r) => {
          const session = sessionFor(r, phone.calls);
          return (
            <RingingCard
              key={r.callId}
              ringing={r}
              canAnswer={registered && session !== undefined}
              inBrowser={session !== undefined}
              onAnswer={() => answer(r)}
              onDecline={() => void hangUp(r).catch(() => undefined)}
              onLinked={(card) =>
                setRinging((list) => list.map((x) => (x.callId === r.callId ? { ...x, linked: card, matches: [card] } : x)))
              }
              controls={
                <InCall
                  live={r}
                  session={session}
                  softphone={softphone.current}
                  dropped={dropped(r)}
                  onHangUp={() => hangUp(r)}
                />
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
            {/* In a call its card has the keypad and Hang up: no second set. */}
            {established === undefined && (
              <DialPad enabled={registered} onCall={(number) => softphone.current?.call(number)} />
            )}
            <p className="muted small-print">{t("shortcuts")}</p>
          </>
        )}
      </main>
    </div>
  );
}
