// The browser's softphone: a JsSIP user agent registered over SIP over
// WebSocket (/ws/sip) with the short-lived credentials the server issues
// to the signed-in employee; no SIP password is kept in the page beyond them.

import * as JsSIP from "jssip";
import type { RTCSession } from "jssip/lib/RTCSession";
import { ApiError, api, type SipCredentials } from "./api";

export type PhoneState = "offline" | "registering" | "registered" | "reconnecting";
export type PhoneProblem = "no-line" | "disabled" | "unavailable" | "failed" | "other-tab" | null;

export interface PhoneCall {
  session: RTCSession;
  incoming: boolean;
  remote: string; // the other party's number (the user part of its URI)
  established: boolean;
  muted: boolean;
}

export interface PhoneView {
  state: PhoneState;
  problem: PhoneProblem;
  reason: string | null;
  calls: PhoneCall[];
}

// Credentials are fetched again this long before they expire.
const RENEW_BEFORE_MS = 60_000;
// After a failure, the next attempt with fresh credentials.
const RETRY_MS = 5_000;

export class Softphone {
  private ua: JsSIP.UA | null = null;
  private view: PhoneView = { state: "offline", problem: null, reason: null, calls: [] };
  private wasRegistered = false;
  private renewTimer: number | null = null;
  private stopped = true;
  private domain = location.hostname;
  // The server's ICE servers (a setting; none by default: its own addresses do).
  private iceServers: RTCIceServer[] = [];
  private readonly audio: HTMLAudioElement;

  constructor(private readonly onChange: (view: PhoneView) => void) {
    this.audio = document.createElement("audio");
    this.audio.autoplay = true;
    // A reload or a closed tab takes the call's audio with it: hang up
    // (BYE) and unregister rather than leave the other party in silence
    // until the server's media timeout.
    window.addEventListener("pagehide", this.leave);
  }

  private readonly leave = (): void => {
    this.ua?.stop();
  };

  get current(): PhoneView {
    return this.view;
  }

  // Another tab of this user holds the softphone: this one waits its turn.
  waiting(): void {
    this.update({ state: "offline", problem: "other-tab", reason: null });
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.update({ state: "registering", problem: null, reason: null });
    let credentials: SipCredentials;
    try {
      credentials = await api.sipCredentials();
    } catch (error) {
      if (this.stopped) return;
      if (error instanceof ApiError && error.status === 409) {
        this.update({ state: "offline", problem: "no-line", reason: null });
      } else if (error instanceof ApiError && error.status === 403) {
        this.update({ state: "offline", problem: "disabled", reason: null });
      } else if (error instanceof ApiError && [404, 405, 503].includes(error.status)) {
        this.update({ state: "offline", problem: "unavailable", reason: null });
      } else {
        this.update({ state: "reconnecting", problem: "failed", reason: String(error) });
        this.renewTimer = window.setTimeout(() => void this.restart(), RETRY_MS);
      }
      return;
    }
    if (this.stopped) return;
    this.connect(credentials);
    const renewIn = Date.parse(credentials.expires_at) - Date.now() - RENEW_BEFORE_MS;
    if (Number.isFinite(renewIn)) {
      this.renewTimer = window.setTimeout(() => void this.restart(), Math.max(renewIn, 30_000));
    }
  }

  stop(): void {
    window.removeEventListener("pagehide", this.leave);
    this.stopped = true;
    if (this.renewTimer !== null) window.clearTimeout(this.renewTimer);
    this.renewTimer = null;
    const ua = this.ua;
    this.ua = null;
    ua?.stop();
    this.wasRegistered = false;
    this.update({ state: "offline", problem: null, reason: null, calls: [] });
  }

  private async restart(): Promise<void> {
    if (this.stopped) return;
    if (this.view.calls.length > 0) {
      // Never in the middle of a call: try again in a minute.
      this.renewTimer = window.setTimeout(() => void this.restart(), 60_000);
      return;
    }
    const ua = this.ua;
    this.ua = null;
    ua?.stop();
    await this.start();
  }

  private connect(credentials: SipCredentials): void {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = credentials.ws_url.startsWith("/")
      ? `${scheme}//${location.host}${credentials.ws_url}`
      : credentials.ws_url;
    this.domain = credentials.uri.split("@")[1] ?? location.hostname;
    this.iceServers = credentials.ice_servers;
    const ua = new JsSIP.UA({
      sockets: [new JsSIP.WebSocketInterface(url)],
      uri: credentials.uri,
      authorization_user: credentials.username,
      password: credentials.password,
      register: true,
      session_timers: false,
      user_agent: "callbridge-panel",
    });
    ua.on("connecting", () => {
      if (ua === this.ua && this.view.state !== "registered") {
        this.update({ state: this.wasRegistered ? "reconnecting" : "registering" });
      }
    });
    ua.on("registered", () => {
      if (ua !== this.ua) return;
      this.wasRegistered = true;
      this.update({ state: "registered", problem: null, reason: null });
    });
    ua.on("disconnected", () => {
      if (ua === this.ua) this.update({ state: this.wasRegistered ? "reconnecting" : "registering" });
    });
    ua.on("unregistered", () => {
      if (ua === this.ua) this.update({ state: "reconnecting" });
    });
    ua.on("registrationFailed", (event: { cause?: string }) => {
      if (ua !== this.ua) return;
      this.update({ state: "reconnecting", problem: "failed", reason: event.cause ?? null });
      // A refused credential (expired, or the line changed): a fresh one.
      if (this.renewTimer !== null) window.clearTimeout(this.renewTimer);
      this.renewTimer = window.setTimeout(() => void this.restart(), RETRY_MS);
    });
    ua.on("newRTCSession", (event: { originator: string; session: RTCSession }) => {
      if (ua === this.ua) this.track(event.session, event.originator === "remote");
    });
    this.ua = ua;
    ua.start();
  }

  private track(session: RTCSession, incoming: boolean): void {
    const remote = session.remote_identity?.uri?.user ?? "";
    const call: PhoneCall = { session, incoming, remote, established: false, muted: false };
    const changed = () => this.update({ calls: [...this.view.calls] });
    const forget = () => {
      this.update({ calls: this.view.calls.filter((c) => c.session !== session) });
    };
    session.on("confirmed", () => {
      call.established = true;
      changed();
    });
    session.on("muted", () => {
      call.muted = true;
      changed();
    });
    session.on("unmuted", () => {
      call.muted = false;
      changed();
    });
    session.on("peerconnection", (event: { peerconnection: RTCPeerConnection }) => {
      event.peerconnection.addEventListener("track", (track: RTCTrackEvent) => {
        const stream = track.streams[0];
        if (stream) this.audio.srcObject = stream;
      });
    });
    session.on("ended", forget);
    session.on("failed", forget);
    this.update({ calls: [...this.view.calls, call] });
  }

  call(number: string): void {
    const ua = this.ua;
    if (ua === null || !ua.isRegistered()) return;
    ua.call(`sip:${number}@${this.domain}`, {
      mediaConstraints: { audio: true, video: false },
      pcConfig: { iceServers: this.iceServers },
    });
  }

  answer(call: PhoneCall): void {
    call.session.answer({
      mediaConstraints: { audio: true, video: false },
      pcConfig: { iceServers: this.iceServers },
    });
  }

  hangUp(call: PhoneCall): void {
    if (!call.session.isEnded()) call.session.terminate();
  }

  mute(call: PhoneCall, on: boolean): void {
    if (on) call.session.mute({ audio: true });
    else call.session.unmute({ audio: true });
  }

  // RFC 4733 events in the media (the browser's RTCDTMFSender), which the
  // relay carries to the other party in the form it accepted.
  dtmf(call: PhoneCall, digits: string): void {
    if (!call.established || call.session.isEnded()) return;
    call.session.sendDTMF(digits, { transportType: JsSIP.C.DTMF_TRANSPORT.RFC2833, duration: 160, interToneGap: 80 });
  }

  private update(change: Partial<PhoneView>): void {
    this.view = { ...this.view, ...change };
    this.onChange(this.view);
  }
}
