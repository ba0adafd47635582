"""Bridges: what joins the media of a call's legs in the media engine.

A `Relay` is the two-party bridge, the fast path: RTP passes between the two
legs untouched, without decoding, as both legs negotiated the same codecs.
The player (music on hold, IVR prompts), the mixer (conference) and the
recorder's tap are bridges of their own, which a call moves legs between.
"""

from __future__ import annotations

from ..media.engine import Leg, MediaSession


class Relay:
    """Two legs of one media session, each sending to the other."""

    def __init__(self, session: MediaSession, a: Leg, b: Leg) -> None:
        self.session = session
        self.legs = (a, b)

    def join(self) -> None:
        """Relay between the two legs (again: it changes nothing if they are)."""
        self.session.connect(*self.legs)

    def leave(self, leg: Leg) -> None:
        """Take `leg` out: neither it nor the other hears anything through here."""
        self.session.disconnect(leg)
