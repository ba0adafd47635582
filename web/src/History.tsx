import { useCallback, useEffect, useState, type ReactNode } from "react";
import { ApiError, api, type CallOut, type Me } from "./api";
import { CardLink } from "./CardLink";
import { isKey, language, t } from "./i18n";

const DIRECTIONS = ["", "incoming", "outgoing", "internal"] as const;
const STATUSES = ["", "answered", "missed", "busy", "rejected", "failed", "cancelled", "in_progress"] as const;
const PAGE = 50;

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

interface Props {
  me: Me;
  // Bumped by the panel when a call of ours ends: the list is read again.
  version: number;
}

export function History({ me, version }: Props) {
  const [direction, setDirection] = useState<string>("");
  const [status, setStatus] = useState<string>("");
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState<{ items: CallOut[]; total: number } | null>(null);
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(() => {
    api
      .calls({
        employee_id: me.employee_id ?? undefined,
        direction: direction || undefined,
        status: status || undefined,
        limit: PAGE,
        offset,
      })
      .then((result) => {
        setPage(result);
        setError(null);
      })
      .catch((failure: unknown) => setError(failure instanceof ApiError ? failure.detail : String(failure)));
  }, [me.employee_id, direction, status, offset]);

  useEffect(load, [load, version]);

  return (
    <section className="history" aria-label={t("history")}>
      <div className="filters row">
        <label>
          {t("direction")}
          <select name="direction" value={direction} onChange={(e) => { setOffset(0); setDirection(e.target.value); }}>
            {DIRECTIONS.map((value) => (
              <option key={value} value={value}>
                {value ? label(value) : t("all")}
              </option>
            ))}
          </select>
        </label>
        <label>
          {t("status")}
          <select name="status" value={status} onChange={(e) => { setOffset(0); setStatus(e.target.value); }}>
            {STATUSES.map((value) => (
              <option key={value} value={value}>
                {value ? label(value) : t("all")}
              </option>
            ))}
          </select>
        </label>
        <button type="button" className="ghost" onClick={load}>
          {t("refresh")}
        </button>
      </div>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {page === null ? (
        <p>{t("loading")}</p>
      ) : page.items.length === 0 ? (
        <p>{t("noCalls")}</p>
      ) : (
        <ol className="calls">
          {page.items.map((call) => {
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
                </div>
              </li>
            );
          })}
        </ol>
      )}
      {page !== null && page.total > PAGE && (
        <div className="row">
          <button type="button" className="ghost" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
            {t("previous")}
          </button>
          <button type="button" className="ghost" disabled={offset + PAGE >= page.total} onClick={() => setOffset(offset + PAGE)}>
            {t("next")}
          </button>
        </div>
      )}
    </section>
  );
}
