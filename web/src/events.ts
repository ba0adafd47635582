// The live call events (/ws/events): reconnects by itself and asks for
// what it missed (`?since=` the last number seen, kept per tab with the
// run's epoch so a reload reattaches where it left off).

export interface CallEvent {
  seq: number;
  epoch: string;
  type: string;
  call_id: string | null;
  at: string;
  direction?: "incoming" | "outgoing" | "internal";
  caller_number?: string;
  callee_number?: string;
  client_number?: string | null;
  line?: string | null;
  matches?: { type: "contact" | "account" | "lead"; id: number | null; name: string | null }[];
  employee?: { id: number; name: string | null } | null;
  status?: string;
  side?: "caller" | "callee";
}

const SEEN_KEY = "callbridge.events.seen";
// Where a reconnect (or a reload) must replay from so that the calls still
// open are rebuilt: just before the first event of the oldest one.
const FROM_KEY = "callbridge.events.from";
const UNAUTHORIZED = 4401;

interface Seen {
  seq: number;
  epoch: string;
}

function readSeen(): Seen | null {
  try {
    const raw = sessionStorage.getItem(SEEN_KEY);
    const seen = raw ? (JSON.parse(raw) as Seen) : null;
    return seen && Number.isInteger(seen.seq) && typeof seen.epoch === "string" ? seen : null;
  } catch {
    return null;
  }
}

export function forgetSeen(): void {
  sessionStorage.removeItem(SEEN_KEY);
  sessionStorage.removeItem(FROM_KEY);
}

// `seq`: the number of the first event of the oldest call still shown
// (null: none is open, replay only what was missed).
export function keepOpenFrom(seq: number | null): void {
  if (seq === null) sessionStorage.removeItem(FROM_KEY);
  else sessionStorage.setItem(FROM_KEY, String(Math.max(0, seq - 1)));
}

function openFrom(): number | null {
  const raw = sessionStorage.getItem(FROM_KEY);
  const value = raw === null ? NaN : Number(raw);
  return Number.isInteger(value) && value >= 0 ? value : null;
}

export class EventStream {
  private socket: WebSocket | null = null;
  private retry = 500;
  private timer: number | null = null;
  private stopped = false;

  constructor(
    private readonly token: string,
    private readonly onEvent: (event: CallEvent) => void,
    private readonly onState: (online: boolean) => void,
    private readonly onUnauthorized: () => void,
  ) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) window.clearTimeout(this.timer);
    this.socket?.close(1000);
    this.socket = null;
  }

  private connect(): void {
    const seen = readSeen();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({ token: this.token });
    const from = openFrom();
    if (from !== null && seen !== null && from < seen.seq) query.set("since", String(from));
    else if (seen) query.set("since", String(seen.seq));
    const socket = new WebSocket(`${scheme}//${location.host}/ws/events?${query.toString()}`);
    this.socket = socket;
    socket.onopen = () => {
      this.retry = 500;
      this.onState(true);
    };
    socket.onmessage = (message: MessageEvent<string>) => {
      let event: CallEvent;
      try {
        event = JSON.parse(message.data) as CallEvent;
      } catch {
        return;
      }
      sessionStorage.setItem(SEEN_KEY, JSON.stringify({ seq: event.seq, epoch: event.epoch }));
      this.onEvent(event);
    };
    socket.onclose = (close: CloseEvent) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.onState(false);
      if (this.stopped) return;
      if (close.code === UNAUTHORIZED) {
        this.onUnauthorized();
        return;
      }
      this.timer = window.setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 10_000);
    };
  }
}
