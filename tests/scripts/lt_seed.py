"""A libtorrent seeder on loopback for the ringtorrent tests.

Prints "READY <ip>:<port>" once it listens and seeds; then logs alerts until killed.
--seed-mode skips the initial hash check and turns hash checks off, so a deliberately corrupted
copy of the data is served as it is (a peer that sends wrong blocks).
"""

import argparse
import sys
import time

import libtorrent as lt

from lt_common import Watchdog, add_torrent, join_addr, listen_port, log, make_session, split_addr


class ChokeCycle:
    """Chokes every peer now and then, as a seeder that runs out of upload slots does: the unchoke
    slot limit drops to 0 for CHOKED_S after each UNCHOKED_S, and libtorrent's choker (asked to
    run again at once) sends CHOKE to every peer, then UNCHOKE when the slots come back."""

    def __init__(self, ses, spec):
        unchoked, _, choked = spec.partition(",")
        self.ses = ses
        self.periods = (float(unchoked), float(choked))
        self.slots = ses.get_settings()["unchoke_slots_limit"]
        self.choked = False
        self.next = time.monotonic() + self.periods[0]

    def step(self, now):
        if now < self.next:
            return
        self.choked = not self.choked
        limit = 0 if self.choked else self.slots
        # unchoke_interval 1: the choker applies the new limit within a second.
        self.ses.apply_settings({"unchoke_slots_limit": limit, "unchoke_interval": 1})
        log("choke-cycle:", "choked" if self.choked else "unchoked", "slots", limit)
        self.next = now + self.periods[1 if self.choked else 0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torrent", required=True)
    ap.add_argument("--data", required=True, help="save path: the directory holding the content")
    ap.add_argument("--listen", required=True, help="IP:PORT, PORT 0 picks a free one")
    ap.add_argument("--seed-mode", action="store_true")
    ap.add_argument("--tracker", help="announce URL added to the torrent")
    ap.add_argument("--upload-rate-limit", type=int, default=0, help="bytes per second, 0 = none")
    ap.add_argument("--peer", action="append", default=[], help="IP:PORT to dial")
    ap.add_argument(
        "--choke-cycle",
        help="UNCHOKED_S,CHOKED_S: once seeding, choke every peer for CHOKED_S after each UNCHOKED_S",
    )
    ap.add_argument("--max-seconds", type=float, default=900)
    ap.add_argument("--ready-timeout", type=float, default=120)
    ap.add_argument("--dht-bootstrap", action="append", default=[], help="IP:PORT of a loopback DHT node")
    ap.add_argument("--dht", action="store_true", help="run the DHT even with no bootstrap node")
    ap.add_argument(
        "--also", action="append", default=[], help="TORRENT=DATA: seed this torrent too (same session)"
    )
    args = ap.parse_args()

    watchdog = Watchdog(args.max_seconds)
    ses = make_session(
        args.listen,
        upload_rate_limit=args.upload_rate_limit,
        seed=True,
        disable_hash_checks=args.seed_mode,
        dht_bootstrap=args.dht_bootstrap,
        dht=args.dht,
    )
    port = listen_port(ses, 30)
    flags = lt.torrent_flags.seed_mode if args.seed_mode else 0
    handle = add_torrent(
        ses, args.torrent, args.data, flags=flags, tracker=args.tracker, dht=bool(args.dht_bootstrap) or args.dht
    )

    handles = [handle]
    for pair in args.also:
        torrent, _, data = pair.partition("=")
        handles.append(add_torrent(ses, torrent, data, flags=flags, tracker=args.tracker, dht=False))

    deadline = time.monotonic() + args.ready_timeout
    while True:
        watchdog.check()
        statuses = [h.status() for h in handles]
        if all(st.is_seeding and st.state != lt.torrent_status.checking_files for st in statuses):
            break
        for st in statuses:
            if st.errc.value() != 0:
                log("TORRENT ERROR", st.name, st.errc.message())
                sys.exit(2)
            if st.state == lt.torrent_status.downloading and not args.seed_mode:
                log("NOT SEEDING: data incomplete", st.name, "progress", st.progress)
                sys.exit(2)
        if time.monotonic() > deadline:
            log("TIMEOUT before seeding, states", [(st.name, st.state, st.progress) for st in statuses])
            sys.exit(2)
        for a in ses.pop_alerts():
            log("alert:", type(a).__name__, a.message())
        ses.wait_for_alert(100)

    host, _ = split_addr(args.listen)
    for p in args.peer:
        handle.connect_peer(split_addr(p))
    log("READY " + join_addr(host, port))

    # A session counter logged with each status line: PORT messages received (BEP 5).
    last = time.monotonic()
    choker = ChokeCycle(ses, args.choke_cycle) if args.choke_cycle else None
    while True:
        watchdog.check()
        if choker:
            choker.step(time.monotonic())
        for a in ses.pop_alerts():
            if isinstance(a, lt.session_stats_alert):
                log("stats: incoming_dht_port", a.values["ses.num_incoming_dht_port"])
                continue
            if isinstance(a, lt.session_stats_header_alert):
                continue
            log("alert:", type(a).__name__, a.message())
        now = time.monotonic()
        if now - last >= 2:
            st = handle.status()
            log("status: peers", st.num_peers, "uploaded", st.all_time_upload, "state", st.state)
            ses.post_session_stats()
            last = now
        ses.wait_for_alert(200)


if __name__ == "__main__":
    main()
