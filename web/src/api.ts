// The server's REST API (/api/v1) with the signed-in user's bearer token.
// The token lives in sessionStorage: per tab, gone when the tab closes,
// kept across a reload (a reload during a call must not sign out).

const TOKEN_KEY = "callbridge.token";

export type CardType = "contact" | "account" | "lead";

export interface CardRef {
  type: CardType;
  id: number | null;
  name: string | null;
}

export interface Me {
  id: number;
  username: string;
  role: string;
  employee_id: number | null;
  employee_name: string | null;
}

export interface CallOut {
  id: string;
  direction: "incoming" | "outgoing" | "internal";
  caller_number: string;
  callee_number: string;
  client_number: string | null;
  internal_number: string | null;
  started_at: string;
  answered_at: string | null;
  ended_at: string | null;
  talk_seconds: number;
  status: string;
  card: CardRef | null;
  matches: CardRef[] | null;
  // Null for a call not recorded, and while its recording is being written.
  recording: RecordingOut | null;
}

export interface RecordingOut {
  url: string;
  duration: number;
  size: number;
}

// A URL an <audio> element can play and seek the recording from without the
// Authorization header: it carries a token for that call, good for ten minutes.
export interface RecordingLink {
  url: string;
  expires_at: string;
}

export interface CallPage {
  items: CallOut[];
  total: number;
}

export interface SipCredentials {
  ws_url: string;
  uri: string;
  username: string;
  password: string;
  expires_at: string;
  ice_servers: RTCIceServer[];
}

export interface NoteOut {
  id: number;
  text: string;
  created_at: string;
}

export interface CardOut {
  id: number;
  name: string;
  email: string | null;
  comment: string;
  phones: { type: string; number: string; e164: string | null }[];
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly field: string | null,
    readonly retryAfter: number | null,
  ) {
    super(`${status}: ${detail}`);
  }
}

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = storedToken();
  if (token !== null) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? null : JSON.stringify(body),
  });
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    let detail = response.statusText;
    let field: string | null = null;
    const raw = (data as { detail?: unknown } | null)?.detail;
    if (typeof raw === "string") detail = raw;
    else if (Array.isArray(raw) && raw.length > 0) {
      const first = raw[0] as { msg?: string; loc?: unknown[] };
      detail = first.msg ?? detail;
      const last = first.loc?.[first.loc.length - 1];
      field = typeof last === "string" ? last : null;
    }
    const retry = Number(response.headers.get("Retry-After"));
    throw new ApiError(response.status, detail, field, Number.isFinite(retry) && retry > 0 ? retry : null);
  }
  return data as T;
}

export const api = {
  login: (username: string, password: string) =>
    request<{ token: string; expires_at: string }>("POST", "/auth/login", { username, password }),
  logout: () => request<void>("POST", "/auth/logout"),
  me: () => request<Me>("GET", "/auth/me"),
  setupState: () => request<{ needed: boolean }>("GET", "/setup"),
  setup: (token: string, login: string, password: string) =>
    request<{ id: number; login: string }>("POST", "/setup", { token, login, password }),
  sipCredentials: () => request<SipCredentials>("POST", "/me/sip-credentials"),
  calls: (query: Record<string, string | number | undefined>) => {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== "") params.set(key, String(value));
    }
    return request<CallPage>("GET", `/calls?${params.toString()}`);
  },
  call: (id: string) => request<CallOut>("GET", `/calls/${encodeURIComponent(id)}`),
  link: (callId: string, type: CardType, id: number) =>
    request<CallOut>("POST", `/calls/${encodeURIComponent(callId)}/link`, { type, id }),
  recordingLink: (callId: string) =>
    request<RecordingLink>("POST", `/calls/${encodeURIComponent(callId)}/recording/link`),
  cardCalls: (type: CardType, id: number) => request<CallPage>("GET", `/${type}s/${id}/calls?limit=50`),
  card: (type: CardType, id: number) => request<CardOut>("GET", `/${type}s/${id}`),
  hold: (callId: string, on: boolean) =>
    request<void>("POST", `/calls/${encodeURIComponent(callId)}/${on ? "hold" : "resume"}`),
  dtmf: (callId: string, digits: string) =>
    request<void>("POST", `/calls/${encodeURIComponent(callId)}/dtmf`, { digits }),
  hangUp: (callId: string) => request<void>("POST", `/calls/${encodeURIComponent(callId)}/hangup`),
  notes: (callId: string) =>
    request<{ items: NoteOut[] }>("GET", `/calls/${encodeURIComponent(callId)}/notes?limit=50`),
  addNote: (callId: string, text: string) =>
    request<NoteOut>("POST", `/calls/${encodeURIComponent(callId)}/notes`, { text }),
  createCard: (type: CardType, name: string, number: string, callId: string) =>
    request<CardOut>("POST", `/${type}s`, {
      name,
      phones: [{ type: type === "account" ? "work" : "mobile", number }],
      call_id: callId,
    }),
};
