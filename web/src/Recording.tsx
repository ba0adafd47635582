import { useRef, useState } from "react";
import { ApiError, api } from "./api";
import { t } from "./i18n";

// A call's recording in a list of calls. Play asks the server for a link
// (a URL with a token for this call) and opens an <audio> player on it,
// which fetches and seeks the WAV by Range on its own. A link lasts ten
// minutes; once it is near its end, or the player failed on it (a 401, 403
// or 404 reaches <audio> only as an error), the next press asks for a new
// one and playing goes on from where it was.

// An error's text from the server, shown in the row: bounded.
const MOST_DETAIL = 200;
// Asked again this long before the server says a link expires.
const MARGIN_MS = 30_000;
// Only a path of our own API goes into src (the page's CSP refuses others too).
const OUR_RECORDING = /^\/api\/v1\/calls\/[^/?#]+\/recording\?token=[\w-]+$/;

interface Link {
  url: string;
  expires: number;
}

interface Props {
  callId: string;
  // The list shows one player at a time: this row's is it.
  open: boolean;
  onOpen: () => void;
}

export function Recording({ callId, open, onOpen }: Props) {
  const [link, setLink] = useState<Link | null>(null);
  const [broken, setBroken] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const asking = useRef(false);
  const player = useRef<HTMLAudioElement>(null);
  const resumeAt = useRef(0);

  async function press() {
    onOpen();
    const usable = link !== null && !broken && Date.now() < link.expires - MARGIN_MS;
    if (usable) {
      // Already open: play from where it paused (a closed one autoplays on opening).
      if (open) void player.current?.play().catch(() => undefined);
      return;
    }
    if (asking.current) return;
    asking.current = true;
    resumeAt.current = player.current?.currentTime ?? 0;
    try {
      const fresh = await api.recordingLink(callId);
      if (!OUR_RECORDING.test(fresh.url)) throw new Error("not a recording link");
      setLink({ url: fresh.url, expires: Date.parse(fresh.expires_at) });
      setBroken(false);
      setError(null);
    } catch (failure) {
      setLink(null);
      setError(reason(failure));
    } finally {
      asking.current = false;
    }
  }

  function resume() {
    const audio = player.current;
    if (audio !== null && resumeAt.current > 0) audio.currentTime = resumeAt.current;
    resumeAt.current = 0;
  }

  return (
    <>
      <button type="button" className="small ghost play" onClick={() => void press()}>
        {t("playRecording")}
      </button>
      {(error !== null || (open && link !== null)) && (
        <div className="recording">
          {error !== null && (
            <p className="error" role="alert">
              {t("recordingFailed", { reason: error })}
            </p>
          )}
          {open && link !== null && (
            <>
              <audio
                ref={player}
                src={link.url}
                controls
                autoPlay
                preload="metadata"
                aria-label={t("recording")}
                onLoadedMetadata={resume}
                onError={() => setBroken(true)}
              />
              {broken && (
                <p className="error" role="alert">
                  {t("recordingBroken")}
                </p>
              )}
            </>
          )}
        </div>
      )}
    </>
  );
}

function reason(failure: unknown): string {
  if (failure instanceof ApiError) return failure.detail.slice(0, MOST_DETAIL);
  if (failure instanceof TypeError) return t("serverUnreachable");
  return String(failure).slice(0, MOST_DETAIL);
}
