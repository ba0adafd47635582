// JsSIP as a browser's softphone runs it, under Node: it registers with the
// credential given in the environment and reports on stdout, one JSON object
// a line, what happens: registered, registrationFailed, incoming (a call
// ringing it, left ringing), ended (that call cancelled or ended). It stops
// (unregistering) when its stdin closes. Only a test peer: WebRTC media is
// the media side's, so it never answers.
import JsSIP from "jssip";
import WebSocket from "ws";

globalThis.WebSocket = WebSocket;
// JsSIP takes an incoming INVITE only where RTCPeerConnection exists; one
// that is never constructed is enough to let a call ring.
globalThis.window = { RTCPeerConnection: class {} };

const env = process.env;
const report = (event) => process.stdout.write(JSON.stringify(event) + "\n");

const ua = new JsSIP.UA({
  sockets: [new JsSIP.WebSocketInterface(env.JSSIP_WS_URL)],
  uri: env.JSSIP_URI,
  authorization_user: env.JSSIP_USERNAME,
  password: env.JSSIP_PASSWORD,
  register: true,
  register_expires: 300,
  user_agent: "JsSIP (callbridge test)",
  connection_recovery_min_interval: 60,
  connection_recovery_max_interval: 60,
});
ua.on("registered", () => report({ event: "registered" }));
ua.on("registrationFailed", (e) =>
  report({
    event: "registrationFailed",
    cause: e.cause,
    status: e.response ? e.response.status_code : null,
    reason: e.response ? e.response.reason_phrase : null,
  }),
);
ua.on("newRTCSession", ({ originator, session, request }) => {
  if (originator !== "remote") return;
  report({ event: "incoming", from: request.from.uri.user, callId: request.call_id });
  session.on("failed", (e) => report({ event: "ended", cause: e.cause }));
  session.on("ended", (e) => report({ event: "ended", cause: e.cause }));
});
ua.start();

process.stdin.resume();
process.stdin.on("end", () => {
  ua.stop();
  setTimeout(() => process.exit(0), 500);
});
