"""Seeds many torrents from one libtorrent session, for `bench-harness bulk`.

usage: lt_bulk_seed.py --listen IP:0 --torrent T=DATA [--torrent T=DATA ...] [--max-seconds S]

Prints `READY <ip>:<port>` once every torrent seeds, then once a second
`STATUS uploaded <bytes> peers <n>`: the sum of `all_time_upload` (payload bytes uploaded since
the start) and of connected peers over all its torrents. libtorrent adds a connection's payload
to `all_time_upload` on its once-a-second tick, so a reader waits for two fresh lines after a
download before taking the total. Torrents announce to their own trackers; DHT, LSD, PEX, UPnP,
NAT-PMP and uTP are off (shared/INTEROP.md). Exits when its parent goes away or after
--max-seconds.
"""

import argparse
import os
import sys
import time

import libtorrent as lt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "scripts"))
from lt_common import make_session  # noqa: E402


def log(*parts):
    print(*parts, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True, help="IP:PORT, PORT 0 picks a free one")
    ap.add_argument("--torrent", action="append", required=True, help="TORRENT=DATA_DIR")
    ap.add_argument("--max-seconds", type=float, default=3600)
    ap.add_argument("--ready-timeout", type=float, default=120)
    args = ap.parse_args()
    parent = os.getppid()
    end = time.monotonic() + args.max_seconds

    # The tests' session settings (loopback only; DHT, LSD, UPnP, NAT-PMP and uTP off).
    ses = make_session(args.listen, seed=True)
    host = args.listen.rpartition(":")[0]
    port = None
    handles = []
    for pair in args.torrent:
        torrent, _, data = pair.rpartition("=")
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(torrent)
        params.save_path = data
        params.flags = (
            params.flags & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
        ) | lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd | lt.torrent_flags.disable_pex
        handles.append(ses.add_torrent(params))

    deadline = time.monotonic() + args.ready_timeout
    while True:
        for a in ses.pop_alerts():
            if isinstance(a, lt.listen_failed_alert):
                log("LISTEN FAILED", a.message())
                sys.exit(3)
            if isinstance(a, lt.listen_succeeded_alert) and a.socket_type == lt.socket_type_t.tcp:
                port = a.port
            else:
                log("alert:", type(a).__name__, a.message())
        statuses = [h.status() for h in handles]
        for st in statuses:
            if st.errc.value() != 0:
                log("TORRENT ERROR", st.name, st.errc.message())
                sys.exit(2)
            if st.state == lt.torrent_status.downloading:
                log("NOT SEEDING: data incomplete", st.name, "progress", st.progress)
                sys.exit(2)
        seeding = all(s.is_seeding and s.state != lt.torrent_status.checking_files for s in statuses)
        if seeding and port is not None:
            break
        if time.monotonic() > deadline:
            log("TIMEOUT before seeding", [(s.name, s.state, s.progress) for s in statuses], port)
            sys.exit(2)
        ses.wait_for_alert(100)
    log("READY %s:%d" % (host, port))

    last = 0.0
    while True:
        if os.getppid() != parent or time.monotonic() > end:
            log("parent gone or max run time reached; stopping")
            sys.exit(4)
        for a in ses.pop_alerts():
            log("alert:", type(a).__name__, a.message())
        now = time.monotonic()
        if now - last >= 1:
            statuses = [h.status() for h in handles]
            up = sum(s.all_time_upload for s in statuses)
            log("STATUS uploaded", up, "peers", sum(s.num_peers for s in statuses))
            last = now
        ses.wait_for_alert(200)


if __name__ == "__main__":
    main()
