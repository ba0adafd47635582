import { useEffect, useState } from "react";
import { ApiError, api, type CallOut, type CardOut, type CardType } from "./api";
import { CallList } from "./CallList";
import { typeLabel } from "./cards";
import { t } from "./i18n";

interface Props {
  type: CardType;
  id: number;
  // Dials a number from the softphone; null while it is not registered.
  onCall: ((number: string) => void) | null;
}

export function CardView({ type, id, onCall }: Props) {
  const [card, setCard] = useState<CardOut | null>(null);
  const [calls, setCalls] = useState<CallOut[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const failed = (failure: unknown) =>
      setError(failure instanceof ApiError ? failure.detail : String(failure));
    api.card(type, id).then(setCard).catch(failed);
    api
      .cardCalls(type, id)
      .then((page) => setCalls(page.items))
      .catch(failed);
  }, [type, id]);
  return (
    <section className="card-view" aria-label={typeLabel(type)}>
      <p>
        <a href="#/">{t("back")}</a>
      </p>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {card && (
        <>
          <h2>
            <span className="card-type">{typeLabel(type)}</span> {card.name}
          </h2>
          {card.email && (
            <p>
              {t("email")}: {card.email}
            </p>
          )}
          <h3>{t("phones")}</h3>
          <ul>
            {card.phones.map((phone, index) => (
              <li key={index}>
                {phone.number} <span className="muted">{phone.type}</span>{" "}
                <button
                  type="button"
                  className="small go"
                  disabled={onCall === null}
                  aria-label={t("callNumber", { number: phone.number })}
                  onClick={() => onCall?.(phone.e164 ?? phone.number)}
                >
                  {t("call")}
                </button>
              </li>
            ))}
          </ul>
          {card.comment && <p className="comment">{card.comment}</p>}
          <h3>{t("history")}</h3>
          {calls === null ? <p>{t("loading")}</p> : calls.length === 0 ? <p>{t("noCalls")}</p> : <CallList calls={calls} />}
        </>
      )}
    </section>
  );
}
