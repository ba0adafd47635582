// Asked at sign-in: the microphone (to answer in the browser) and
// notifications (to hear of a call while the tab is in the background).
import type { Key } from "./i18n";

export async function askPermissions(): Promise<Key[]> {
  const problems: Key[] = [];
  try {
    if (!navigator.mediaDevices?.getUserMedia) throw new DOMException("", "NotFoundError");
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    for (const track of stream.getTracks()) track.stop();
  } catch (error) {
    const name = error instanceof DOMException ? error.name : "";
    problems.push(name === "NotFoundError" || name === "NotReadableError" ? "micUnavailable" : "micRefused");
  }
  if (!("Notification" in window)) {
    problems.push("notifyRefused");
  } else if (Notification.permission !== "granted") {
    try {
      if ((await Notification.requestPermission()) !== "granted") problems.push("notifyRefused");
    } catch {
      problems.push("notifyRefused");
    }
  }
  return problems;
}

export function notifyCall(title: string, body: string, tag: string): void {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  if (!document.hidden && document.hasFocus()) return;
  const notification = new Notification(title, { body, tag, requireInteraction: true });
  notification.onclick = () => {
    window.focus();
    notification.close();
  };
}
