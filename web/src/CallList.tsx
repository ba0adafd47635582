import { type ReactNode, useState } from "react";
import type { CallOut } from "./api";
import { CardLink } from "./CardLink";
import { isKey, language, t } from "./i18n";
import { Recording } from "./Recording";

function label(value: string): string {
  return isKey(value) ? t(value) : value;
}

function duration(seconds: number): string {
  const m = Math.floor(seconds / 60);
  const s = seconds % 60;
  return `${m}:${String(s).padStart(2, "0")}`;
}

// Read by screen readers, not shown: what each value of a row is.
function Hidden({ children }: { children: ReactNode }) {
  return <span className="sr-only">{children}</span>;
}

const when = new Intl.DateTimeFormat(language, { dateStyle: "short", timeStyle: "short" });

// Calls, newest first: a missed incoming call in red; a recorded one with
// its player (one open at a time).
export function CallList({ calls }: { calls: CallOut[] }) {
  const [playing, setPlaying] = useState<string | null>(null);
  return (
    <ol className="calls">
      {calls.map((call) => {
        const missed = call.direction === "incoming" && call.status === "missed";
        return (
          <li
            key={call.id}
            className={missed ? "call missed" : "call"}
            data-call-id={call.id}
            data-status={call.status}
            data-direction={call.direction}
          >
            <div className="call-main">
              <span className={`arrow ${call.direction}`} aria-hidden="true">
                {call.direction === "incoming" ? "↙" : call.direction === "outgoing" ? "↗" : "↔"}
              </span>
              <Hidden>{label(call.direction)}, {t("clientNumber")}: </Hidden>
              <span className="client">{call.client_number ?? call.caller_number}</span>
              {call.card ? <CardLink card={call.card} /> : null}
            </div>
            <div className="call-details">
              <Hidden>{t("when")}: </Hidden>
              <time dateTime={call.started_at}>{when.format(new Date(call.started_at))}</time>
              <span>
                <Hidden>{t("internalNumber")}: </Hidden>
                {call.internal_number ?? "—"}
              </span>
              <span>
                <Hidden>{t("duration")}: </Hidden>
                {duration(call.talk_seconds)}
              </span>
              <span className="status">
                <Hidden>{t("status")}: </Hidden>
                {label(call.status)}
              </span>
              {call.recording && (
                <Recording callId={call.id} open={playing === call.id} onOpen={() => setPlaying(call.id)} />
              )}
            </div>
          </li>
        );
      })}
    </ol>
  );
}
