"""A libtorrent DHT node on loopback for the ringtorrent DHT tests: a session with no torrent,
only its DHT, bootstrapped from the --dht-bootstrap nodes given (none for the first node of a
test's DHT, which then learns of the others when they ask it).

Prints "READY <ip>:<udp port>" once its UDP socket listens, then "NODES <n>" whenever the
number of nodes in its routing table changes; serves until killed (or --max-seconds).
"""

import argparse

import libtorrent as lt

from lt_common import Watchdog, listen_port, log, make_session, split_addr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True, help="IP:0 on loopback")
    ap.add_argument("--dht-bootstrap", action="append", default=[], help="IP:PORT of a loopback DHT node")
    ap.add_argument("--max-seconds", type=float, default=900)
    args = ap.parse_args()

    watchdog = Watchdog(args.max_seconds)
    host, _ = split_addr(args.listen)
    ses = make_session(args.listen, dht_bootstrap=args.dht_bootstrap, dht=True)
    # The DHT's socket: UDP (uTP shares it).
    port = listen_port(ses, 30, (lt.socket_type_t.udp, lt.socket_type_t.utp))
    log("READY %s:%d" % (host, port))
    nodes = -1
    while True:
        watchdog.check()
        ses.post_dht_stats()
        for a in ses.pop_alerts():
            if isinstance(a, lt.dht_stats_alert):
                n = sum(b["num_nodes"] for b in a.routing_table)
                if n != nodes:
                    nodes = n
                    log("NODES %d" % n)
        ses.wait_for_alert(500)


if __name__ == "__main__":
    main()
