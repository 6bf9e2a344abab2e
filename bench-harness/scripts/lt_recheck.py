"""Full hash check of existing data with libtorrent, for `bench-harness recheck`.

usage: lt_recheck.py --torrent T --save DIR
Prints `CHECKED N/M pieces in S s` (time from adding the torrent to the end of the check) and
exits 0 if every piece verified, 1 otherwise. The session stays on loopback with everything
that could reach the network turned off.
"""

import argparse
import sys
import time

import libtorrent as lt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torrent", required=True)
    ap.add_argument("--save", required=True)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()

    pack = lt.default_settings()
    pack.update(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_incoming_utp": False,
            "enable_outgoing_utp": False,
            "aio_threads": 4,
            "hashing_threads": 2,
            "alert_mask": lt.alert.category_t.status_notification
            | lt.alert.category_t.error_notification
            | lt.alert.category_t.storage_notification,
        }
    )
    ses = lt.session(pack)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(args.torrent)
    params.save_path = args.save
    params.flags &= ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
    start = time.monotonic()
    handle = ses.add_torrent(params)
    checked = False
    while not checked:
        if time.monotonic() - start > args.timeout:
            print("TIMEOUT", flush=True)
            return 1
        ses.wait_for_alert(20)
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_checked_alert):
                checked = True
            elif isinstance(a, lt.torrent_error_alert):
                print("ERROR", a.message(), flush=True)
                return 1
    st = handle.status()
    took = time.monotonic() - start
    have = st.num_pieces
    total = params.ti.num_pieces()
    print("CHECKED %d/%d pieces in %.3f s" % (have, total, took), flush=True)
    return 0 if have == total else 1


if __name__ == "__main__":
    sys.exit(main())
