import { useEffect, useState, type FormEvent } from "react";
import { ApiError, api, type NoteOut } from "./api";
import { t } from "./i18n";
import type { PhoneCall, Softphone } from "./softphone";

const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];

export interface Live {
  callId: string;
  answeredAt: number | null; // ms since the epoch, from the `answered` event
  held: boolean; // our side holds the other: the server's `held` / `resumed` events
}

interface Props {
  live: Live;
  // The browser's own session of this call; undefined when it is on a desk
  // phone (the controls then go through the API).
  session: PhoneCall | undefined;
  softphone: Softphone | null;
  // The call was in this tab's softphone before a reload took its audio.
  dropped: boolean;
  // Rejects with what went wrong (an API hang-up refused).
  onHangUp: () => Promise<void>;
}

function clock(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  const mm = h > 0 ? String(m).padStart(2, "0") : String(m);
  return `${h > 0 ? `${h}:` : ""}${mm}:${String(s).padStart(2, "0")}`;
}

function problem(failure: unknown): string {
  return failure instanceof ApiError ? failure.detail : String(failure);
}

// The controls of an answered call: timer, mute, hold, keypad, notes and
// hang-up. Hold is the server's (the API: the other party hears the music,
// and a refused hold leaves the call as it was, where a failed re-INVITE
// would make JsSIP end it); a call in this browser is muted and sent digits
// by the softphone itself (RFC 4733 in its media), one on a desk phone
// gets its digits through the API.
export function InCall({ live, session, softphone, dropped, onHangUp }: Props) {
  const [now, setNow] = useState(() => Date.now());
  const [keypad, setKeypad] = useState(false);
  const [sent, setSent] = useState("");
  const [notes, setNotes] = useState<NoteOut[]>([]);
  const [draft, setDraft] = useState("");
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, []);

  // Notes written before a reload come back with the call.
  useEffect(() => {
    api
      .notes(live.callId)
      .then((page) => setNotes(page.items))
      .catch(() => undefined); // the record is not written yet: no notes
  }, [live.callId]);

  const inBrowser = session !== undefined && softphone !== null;
  const held = live.held;

  function hold() {
    setError(null);
    api.hold(live.callId, !held).catch((failure: unknown) => setError(problem(failure)));
  }

  function hangUp() {
    setError(null);
    onHangUp().catch((failure: unknown) => setError(problem(failure)));
  }

  function press(key: string) {
    setSent((digits) => (digits + key).slice(-16));
    if (inBrowser) softphone.dtmf(session, key);
    else api.dtmf(live.callId, key).catch((failure: unknown) => setError(problem(failure)));
  }

  async function save(event: FormEvent) {
    event.preventDefault();
    const text = draft.trim();
    if (text === "") return;
    setSaving(true);
    setError(null);
    try {
      const note = await api.addNote(live.callId, text);
      setNotes((list) => [note, ...list]);
      setDraft("");
    } catch (failure) {
      setError(problem(failure));
    } finally {
      setSaving(false);
    }
  }

  const talked = live.answeredAt === null ? null : Math.max(0, Math.floor((now - live.answeredAt) / 1000));

  return (
    <div className="in-call">
      {dropped && (
        <p className="notice" role="alert">
          {t("droppedByReload")}
        </p>
      )}
      <p className="call-state">
        <span role="timer" aria-label={t("talkTime")}>
          {talked === null ? "" : clock(talked)}
        </span>
        {held && <span className="held"> · {t("onHold")}</span>}
        {session?.muted && <span className="muted-state"> · {t("muted")}</span>}
      </p>
      {!dropped && (
        <div className="row controls">
          {inBrowser && (
            <button
              type="button"
              className="ghost"
              aria-pressed={session.muted}
              onClick={() => softphone.mute(session, !session.muted)}
            >
              {t("mute")}
            </button>
          )}
          <button type="button" className="ghost" aria-pressed={held} onClick={hold}>
            {t("hold")}
          </button>
          <button type="button" className="ghost" aria-expanded={keypad} onClick={() => setKeypad((open) => !open)}>
            {t("keypad")}
          </button>
        </div>
      )}
      {keypad && !dropped && (
        <div className="keypad" role="group" aria-label={t("keypad")}>
          <output className="sent" aria-label={t("digitsSent")}>
            {sent}
          </output>
          <div className="keys">
            {KEYS.map((key) => (
              <button type="button" key={key} aria-label={t("sendDigit", { digit: key })} onClick={() => press(key)}>
                {key}
              </button>
            ))}
          </div>
        </div>
      )}
      <form className="note-form" onSubmit={(event) => void save(event)}>
        <label>
          {t("note")}
          <textarea name="note" rows={2} maxLength={10_000} value={draft} onChange={(e) => setDraft(e.target.value)} />
        </label>
        <button type="submit" className="small" disabled={saving || draft.trim() === ""}>
          {saving ? t("saving") : t("saveNote")}
        </button>
      </form>
      {notes.length > 0 && (
        <ul className="notes" aria-label={t("notes")}>
          {notes.map((note) => (
            <li key={note.id}>{note.text}</li>
          ))}
        </ul>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="row actions">
        <button type="button" className="danger" onClick={hangUp} aria-keyshortcuts="Alt+H">
          {dropped ? t("endCall") : t("hangUp")}
        </button>
      </div>
    </div>
  );
}
