import { t, type Key } from "./i18n";
import type { PhoneView } from "./softphone";

const LABELS: Record<PhoneView["state"], Key> = {
  offline: "phoneOffline",
  registering: "phoneRegistering",
  registered: "phoneRegistered",
  reconnecting: "phoneReconnecting",
};

export function StatusBadge({ phone }: { phone: PhoneView }) {
  const label = t(LABELS[phone.state]);
  let detail: string | null = null;
  if (phone.problem === "no-line") detail = t("phoneNoLine");
  else if (phone.problem === "disabled") detail = t("phoneDisabled");
  else if (phone.problem === "unavailable") detail = t("phoneUnavailable");
  else if (phone.problem === "failed") detail = t("phoneFailed", { reason: phone.reason ?? "" });
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
