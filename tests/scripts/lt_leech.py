"""A libtorrent downloader on loopback for the ringtorrent tests and benchmark.

Downloads one torrent into --save, dialling the --peer addresses and using the torrent's (or the
given) tracker, and exits 0 once every piece is verified; 1 on timeout or error.
"""

import argparse
import sys
import time

import libtorrent as lt

from lt_common import Watchdog, add_torrent, listen_port, log, make_session, split_addr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torrent")
    ap.add_argument("--magnet", help="a magnet link instead of --torrent (metadata from peers)")
    ap.add_argument("--save", required=True)
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--tracker")
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--pex", action="store_true", help="exchange peers (BEP 11)")
    ap.add_argument("--download-rate-limit", type=int, default=0, help="bytes per second, 0 = none")
    ap.add_argument("--dht-bootstrap", action="append", default=[], help="IP:PORT of a loopback DHT node")
    args = ap.parse_args()

    watchdog = Watchdog(args.timeout + 30)
    ses = make_session(
        args.listen, download_rate_limit=args.download_rate_limit, dht_bootstrap=args.dht_bootstrap
    )
    port = listen_port(ses, 30)
    log("listening on port", port)
    if not args.torrent and not args.magnet:
        ap.error("--torrent or --magnet is needed")
    handle = add_torrent(
        ses,
        args.torrent,
        args.save,
        tracker=args.tracker,
        magnet=args.magnet,
        pex=args.pex,
        dht=bool(args.dht_bootstrap),
    )
    for p in args.peer:
        handle.connect_peer(split_addr(p))

    start = time.monotonic()
    last = start
    while True:
        watchdog.check()
        for a in ses.pop_alerts():
            if isinstance(a, lt.hash_failed_alert):
                log("HASH FAILED piece", a.piece_index)
            elif not args.quiet:
                log("alert:", type(a).__name__, a.message())
        st = handle.status()
        if args.magnet and not st.has_metadata:
            pass
        elif st.is_finished or st.is_seeding:
            log("FINISHED in %.3f s" % (time.monotonic() - start))
            return 0
        if st.errc.value() != 0:
            log("TORRENT ERROR", st.errc.message())
            return 1
        now = time.monotonic()
        if now - start > args.timeout:
            log("TIMEOUT progress", st.progress)
            return 1
        if now - last >= 2 and not args.quiet:
            log("status: peers", st.num_peers, "progress %.3f" % st.progress, "rate", st.download_rate)
            last = now
        ses.wait_for_alert(100)


if __name__ == "__main__":
    sys.exit(main())
