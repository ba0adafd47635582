import { useState, type FormEvent } from "react";
import { t } from "./i18n";

const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];

interface Props {
  enabled: boolean;
  onCall: (number: string) => void;
}

export function DialPad({ enabled, onCall }: Props) {
  const [number, setNumber] = useState("");

  function submit(event: FormEvent) {
    event.preventDefault();
    const cleaned = number.replace(/[^0-9*#+]/g, "");
    if (cleaned) onCall(cleaned);
  }

  return (
    <section className="dialpad" aria-label={t("dialPad")}>
      <form onSubmit={submit}>
        <div className="dial-line">
          <input
            aria-label={t("numberToCall")}
            name="number"
            inputMode="tel"
            autoComplete="off"
            maxLength={32}
            value={number}
            onChange={(e) => setNumber(e.target.value.replace(/[^0-9*#+ ()-]/g, ""))}
          />
          <button
            type="button"
            className="ghost"
            aria-label={t("erase")}
            onClick={() => setNumber((n) => n.slice(0, -1))}
          >
            ⌫
          </button>
        </div>
        <div className="keys">
          {KEYS.map((key) => (
            <button
              type="button"
              key={key}
              aria-label={key}
              onClick={() => setNumber((n) => (n.length < 32 ? n + key : n))}
            >
              {key}
            </button>
          ))}
        </div>
        <button type="submit" className="go wide" disabled={!enabled || number === ""}>
          {t("call")}
        </button>
      </form>
    </section>
  );
}
