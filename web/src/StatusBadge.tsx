import { t, type Key } from "./i18n";
import type { PhoneView } from "./softphone";

const LABELS: Record<PhoneView["state"], Key> = {
  offline: "phoneOffline",
  registering: "phoneRegistering",
  registered: "phoneRegistered",
  reconnecting: "phoneReconnecting",
};

// Why the softphone is not registered, in words (null: nothing wrong).
export function phoneProblem(phone: PhoneView): string | null {
  switch (phone.problem) {
    case "no-line":
      return t("phoneNoLine");
    case "disabled":
      return t("phoneDisabled");
    case "other-tab":
      return t("phoneOtherTab");
    case "unavailable":
      return t("phoneUnavailable");
    case "failed":
      return t("phoneFailed", { reason: phone.reason ?? "" });
    default:
      return null;
  }
}

export function StatusBadge({ phone }: { phone: PhoneView }) {
  const label = t(LABELS[phone.state]);
  const detail = phoneProblem(phone);
  return (
    <span
      className={`badge badge-${phone.state}`}
      role="status"
      aria-live="polite"
      data-state={phone.state}
      title={detail ?? undefined}
      aria-label={t("phoneStatus", { state: label })}
    >
      <span className="dot" aria-hidden="true" />
      {label}
    </span>
  );
}
