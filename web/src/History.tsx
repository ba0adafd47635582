import { useCallback, useEffect, useState } from "react";
import { ApiError, api, type CallOut, type Me } from "./api";
import { CallList } from "./CallList";
import { isKey, t } from "./i18n";

const DIRECTIONS = ["", "incoming", "outgoing", "internal"] as const;
const STATUSES = ["", "answered", "missed", "busy", "rejected", "failed", "cancelled", "in_progress"] as const;
const PAGE = 50;

function label(value: string): string {
  return isKey(value) ? t(value) : value;
}

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
        <CallList calls={page.items} />
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
