"""A libtorrent downloader that starts from a magnet link and reports when things happen.

For `bench-harness magnet`: adds --magnet (peers from its `x.pe`, which libtorrent's
parse_magnet_uri honours, plus any --peer), downloads into --save and prints, each as soon as it
happens and flushed:

    EVENT imported <s>       `import libtorrent` done (for the breakdown only)
    EVENT listening <s>      the session listens and the magnet is added (breakdown only)
    EVENT metadata <s>       metadata_received_alert
    EVENT first_piece <s>    the first piece_finished_alert (a piece that passed its hash check)
    EVENT finished <s>       every piece is in (torrent_finished_alert or the status says so)
    RECEIVED <bytes>         the torrent's total_payload_download when finished

<s> is seconds since this script started (taken before `import libtorrent`); the harness uses
its own clock from spawning the process, which also counts the interpreter's start. Exits 0 when
finished, 1 on timeout or error. Same loopback-only session as the kit's other scripts.
"""

import time

T0 = time.monotonic()

import argparse  # noqa: E402
import sys  # noqa: E402

import libtorrent as lt  # noqa: E402

from lt_common import Watchdog, add_torrent, listen_port, log, make_session, split_addr  # noqa: E402


def event(name, extra=""):
    log("EVENT %s %.4f%s" % (name, time.monotonic() - T0, extra))


def main():
    event("imported")
    ap = argparse.ArgumentParser()
    ap.add_argument("--magnet", required=True)
    ap.add_argument("--save", required=True)
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()

    watchdog = Watchdog(args.timeout + 30)
    ses = make_session(args.listen)
    # piece_finished_alert is in the piece_progress category, which make_session leaves out.
    mask = ses.get_settings()["alert_mask"] | lt.alert.category_t.piece_progress_notification
    ses.apply_settings({"alert_mask": mask})
    listen_port(ses, 30)
    handle = add_torrent(ses, None, args.save, magnet=args.magnet)
    for p in args.peer:
        handle.connect_peer(split_addr(p))
    event("listening")

    have_metadata = False
    first_piece = False
    while True:
        watchdog.check()
        finished = False
        for a in ses.pop_alerts():
            if isinstance(a, lt.metadata_received_alert) and not have_metadata:
                have_metadata = True
                event("metadata")
            elif isinstance(a, lt.piece_finished_alert) and not first_piece:
                first_piece = True
                event("first_piece", " piece %d" % a.piece_index)
            elif isinstance(a, lt.torrent_finished_alert):
                finished = True
            elif isinstance(a, lt.hash_failed_alert):
                log("HASH FAILED piece", a.piece_index)
            elif isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
                log("alert:", type(a).__name__, a.message())
        st = handle.status()
        if st.has_metadata and not have_metadata:
            # Metadata known without its alert (should not happen for a magnet).
            have_metadata = True
            event("metadata")
        if have_metadata and (finished or st.is_finished or st.is_seeding):
            event("finished")
            log("RECEIVED %d" % st.total_payload_download)
            return 0
        if st.errc.value() != 0:
            log("TORRENT ERROR", st.errc.message())
            return 1
        if time.monotonic() - T0 > args.timeout:
            log("TIMEOUT progress", st.progress)
            return 1
        ses.wait_for_alert(50)


if __name__ == "__main__":
    sys.exit(main())
