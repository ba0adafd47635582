import { useEffect, useState, type FormEvent, type ReactNode } from "react";
import { ApiError, api, type CardRef, type CardType } from "./api";
import { CardLink } from "./CardLink";
import { t, type Key } from "./i18n";

export interface Ringing {
  callId: string;
  seq: number; // the number of its `ringing` event
  number: string; // the caller's number as shown (the client's, else the caller's)
  direction: string;
  outgoing: boolean; // placed by this employee (the panel, click-to-call, a desk phone)
  matches: CardRef[];
  linked: CardRef | null;
  colleague: string | null;
  answered: boolean;
  answeredAt: number | null;
  held: boolean; // this employee's side holds the other (the server's events)
  at: number;
}

interface Props {
  ringing: Ringing;
  canAnswer: boolean;
  inBrowser: boolean; // the browser's own softphone holds this call now
  onAnswer: () => void;
  onDecline: () => void;
  onLinked: (card: CardRef) => void;
  // The answered call's controls (InCall), shown in place of answer/decline.
  controls: ReactNode;
}

const CREATE: [CardType, Key][] = [
  ["contact", "createContact"],
  ["account", "createAccount"],
  ["lead", "createLead"],
];

export function RingingCard({ ringing, canAnswer, inBrowser, onAnswer, onDecline, onLinked, controls }: Props) {
  const [creating, setCreating] = useState<CardType | null>(null);
  const [name, setName] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  // A card linked before a reload comes back from the call's record.
  useEffect(() => {
    api
      .call(ringing.callId)
      .then((call) => {
        if (call.card) onLinked(call.card);
      })
      .catch(() => undefined); // not written yet: nothing was linked
    // Once per call: the record is read when its card first shows.
  }, [ringing.callId]);
  const who = ringing.linked?.name ?? ringing.matches[0]?.name ?? ringing.colleague ?? ringing.number;
  const cards = ringing.linked ? [ringing.linked] : ringing.matches;

  async function create(event: FormEvent) {
    event.preventDefault();
    if (creating === null) return;
    setBusy(true);
    setError(null);
    try {
      const card = await api.createCard(creating, name.trim(), ringing.number, ringing.callId);
      onLinked({ type: creating, id: card.id, name: card.name });
      setCreating(null);
    } catch (failure) {
      setError(failure instanceof ApiError ? `${failure.field ?? ""} ${failure.detail}`.trim() : String(failure));
    } finally {
      setBusy(false);
    }
  }

  async function choose(card: CardRef) {
    if (card.id === null) return;
    try {
      await api.link(ringing.callId, card.type, card.id);
      onLinked(card);
    } catch (failure) {
      setError(failure instanceof ApiError ? failure.detail : String(failure));
    }
  }

  return (
    <section
      className={`ringing ${ringing.answered ? "answered" : ""}`}
      aria-label={ringing.answered ? t("inCall", { who }) : t("callFrom", { who })}
      data-call-id={ringing.callId}
    >
      <header>
        <span className="ringing-title">
          {ringing.answered ? t("inCall", { who: "" }) : ringing.outgoing ? t("calling") : t("incomingCall")}
        </span>
        <strong className="ringing-number">{ringing.number}</strong>
      </header>
      {ringing.colleague && <p>{t("colleague", { name: ringing.colleague })}</p>}
      {cards.length === 1 && cards[0] && (
        <p className="identified">
          <CardLink card={cards[0]} />
          {ringing.linked && <span className="linked"> · {t("linked")}</span>}
        </p>
      )}
      {cards.length > 1 && (
        <div className="candidates">
          <p>{t("chooseCard")}</p>
          <ul>
            {cards.map((card, index) => (
              <li key={`${card.type}-${card.id ?? index}`}>
                <CardLink card={card} />
                {card.id !== null && (
                  <button type="button" className="small" onClick={() => void choose(card)}>
                    {t("linkThis")}
                  </button>
                )}
              </li>
            ))}
          </ul>
        </div>
      )}
      {cards.length === 0 && !ringing.colleague && (
        <div className="unknown">
          <p>{t("unknownNumber")}</p>
          {creating === null ? (
            <div className="create-buttons">
              {CREATE.map(([type, label]) => (
                <button type="button" className="small" key={type} onClick={() => setCreating(type)}>
                  {t(label)}
                </button>
              ))}
            </div>
          ) : (
            <form onSubmit={create} className="create-form" aria-label={t(CREATE.find(([k]) => k === creating)?.[1] ?? "createContact")}>
              <label>
                {t("cardName")}
                <input
                  name="card-name"
                  value={name}
                  required
                  maxLength={200}
                  autoFocus
                  onChange={(e) => setName(e.target.value)}
                />
              </label>
              <p className="muted">{ringing.number}</p>
              <div className="row">
                <button type="submit" disabled={busy || name.trim() === ""}>
                  {busy ? t("creating") : t("create")}
                </button>
                <button type="button" className="ghost" onClick={() => setCreating(null)}>
                  {t("cancel")}
                </button>
              </div>
            </form>
          )}
        </div>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {ringing.answered ? (
        controls
      ) : (
        <>
          {(!ringing.outgoing || inBrowser) && (
            <div className="row actions">
              {!ringing.outgoing && (
                <button type="button" className="go" disabled={!canAnswer} onClick={onAnswer} aria-keyshortcuts="Alt+A">
                  {t("answer")}
                </button>
              )}
              <button
                type="button"
                className="danger"
                disabled={!canAnswer && !inBrowser}
                onClick={onDecline}
                aria-keyshortcuts="Alt+H"
              >
                {ringing.outgoing ? t("hangUp") : t("decline")}
              </button>
            </div>
          )}
          {!canAnswer && !ringing.outgoing && <p className="muted small-print">{t("answerWaits")}</p>}
        </>
      )}
    </section>
  );
}
