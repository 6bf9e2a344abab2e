"""Shared helpers for the libtorrent scripts of the ringtorrent test kit.

Every session these scripts make stays on loopback: DHT, local peer discovery, UPnP, NAT-PMP are
off, and the session listens only on the address it is given (see shared/INTEROP.md). Peers
connect over TCP only unless RT_LT_TRANSPORT says otherwise (uTP, BEP 29, on the same port).
The DHT is turned on only with `dht_bootstrap` nodes, which must be on 127.0.0.0/8; libtorrent
then bootstraps from them alone.
"""

import os
import sys
import time

import libtorrent as lt


def log(*parts):
    print(*parts, flush=True)


def split_addr(text):
    """'127.0.0.2:6881' -> ('127.0.0.2', 6881); '[::1]:6881' -> ('::1', 6881)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def join_addr(host, port):
    """('::1', 6881) -> '[::1]:6881'; IPv4 as is."""
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def dht_settings(nodes):
    """Settings for a DHT on loopback only: bootstrap from `nodes` ('127.0.0.x:PORT' strings) and
    nowhere else. libtorrent's defaults keep one node per IP range, drop nodes whose id does not
    match their IP and ignore some address ranges; those are off so a test's nodes, all on
    127.x, are used. Announces are repeated every few seconds instead of 15 minutes."""
    for n in nodes:
        host, port = split_addr(n)
        if not host.startswith("127.") or port == 0:
            raise SystemExit("DHT bootstrap node %r is not on loopback" % n)
    return {
        "enable_dht": True,
        "dht_bootstrap_nodes": ",".join(nodes),
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_prefer_verified_node_ids": False,
        "dht_enforce_node_id": False,
        "dht_ignore_dark_internet": False,
        "dht_announce_interval": 5,
    }


def encryption_settings(policy):
    """MSE/PE settings by name (the test kit sets RT_LT_ENCRYPTION): 'forced' allows only RC4
    both ways, 'disabled' only plaintext, 'default' leaves libtorrent's defaults (try MSE
    first, accept both, plaintext preferred)."""
    if policy == "default":
        return {}
    if policy == "forced":
        # enc_level: 1 plaintext, 2 RC4, 3 both (lt.enc_level; shared/INTEROP.md has 1 and 2 swapped).
        return {"out_enc_policy": 0, "in_enc_policy": 0, "allowed_enc_level": 2, "prefer_rc4": True}
    if policy == "disabled":
        return {"out_enc_policy": 2, "in_enc_policy": 2}
    raise SystemExit("RT_LT_ENCRYPTION=%r: expected default, forced or disabled" % policy)


def transport_settings(transport):
    """Peer transports by name (the test kit sets RT_LT_TRANSPORT): 'tcp' (the default) turns
    uTP off both ways, 'utp' turns TCP off both ways (uTP only: a TCP dial to this session is
    refused, and it dials only over uTP), 'both' leaves both on. uTP uses the UDP socket of the
    listen port."""
    on = {
        "tcp": (True, False),
        "utp": (False, True),
        "both": (True, True),
    }.get(transport)
    if on is None:
        raise SystemExit("RT_LT_TRANSPORT=%r: expected tcp, utp or both" % transport)
    tcp, utp = on
    return {
        "enable_incoming_tcp": tcp,
        "enable_outgoing_tcp": tcp,
        "enable_incoming_utp": utp,
        "enable_outgoing_utp": utp,
    }


def transport():
    """The transport this process's sessions use (RT_LT_TRANSPORT, default 'tcp')."""
    return os.environ.get("RT_LT_TRANSPORT", "tcp")


def make_session(
    listen,
    upload_rate_limit=0,
    seed=False,
    disable_hash_checks=False,
    download_rate_limit=0,
    dht_bootstrap=(),
    dht=False,
):
    """A libtorrent session confined to `listen` (an 'IP:PORT' string; PORT may be 0); with a DHT
    bootstrapped only from the `dht_bootstrap` nodes if there are any, or if `dht`."""
    pack = lt.high_performance_seed() if seed else lt.default_settings()
    host, _ = split_addr(listen)
    pack.update(
        {
            "listen_interfaces": listen,
            "outgoing_interfaces": host,
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "allow_multiple_connections_per_ip": True,
            "upload_rate_limit": upload_rate_limit,
            "download_rate_limit": download_rate_limit,
            "disable_hash_checks": disable_hash_checks,
            "min_reconnect_time": 1,
            "alert_mask": lt.alert.category_t.error_notification
            | lt.alert.category_t.status_notification
            | lt.alert.category_t.storage_notification
            | lt.alert.category_t.tracker_notification
            | lt.alert.category_t.connect_notification
            | lt.alert.category_t.peer_notification,
        }
    )
    pack.update(encryption_settings(os.environ.get("RT_LT_ENCRYPTION", "default")))
    pack.update(transport_settings(transport()))
    if dht_bootstrap or dht:
        # In the pack the session starts with: the default bootstrap node is never contacted.
        pack.update(dht_settings(dht_bootstrap))
        pack["alert_mask"] = pack["alert_mask"] | lt.alert.category_t.dht_notification
    ses = lt.session(pack)
    # libtorrent puts loopback and LAN peers in an unlimited "local" peer class; put every
    # address in the global class so upload_rate_limit applies on 127.x too.
    everyone = lt.ip_filter()
    everyone.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
    everyone.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1 << lt.session.global_peer_class_id)
    ses.set_peer_class_filter(everyone)
    return ses


def add_torrent(ses, torrent, save_path, flags=0, tracker=None, magnet=None, pex=False, dht=False):
    """Adds a .torrent file, or a magnet link (metadata fetched from peers) if `magnet`.
    Peer exchange (BEP 11) is off unless `pex`, the session's DHT unused unless `dht`."""
    if magnet:
        params = lt.parse_magnet_uri(magnet)
    else:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(torrent)
    params.save_path = save_path
    params.flags = (params.flags | flags) & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
    params.flags |= lt.torrent_flags.disable_lsd
    if not dht:
        params.flags |= lt.torrent_flags.disable_dht
    if not pex:
        params.flags |= lt.torrent_flags.disable_pex
    if tracker:
        params.trackers = [tracker]
    return ses.add_torrent(params)


def listen_port(ses, timeout_s, socket_types=None):
    """Waits for the listen sockets of `socket_types` (default: TCP, and uTP too when the
    transport includes it); returns their port (the one the OS chose if we asked for 0). Other
    alerts on the way are logged."""
    if socket_types is None:
        socket_types = (lt.socket_type_t.tcp,)
        if transport() != "tcp":
            socket_types += (lt.socket_type_t.udp,)  # uTP runs on it (same value as .utp)
    wanted = set(socket_types)
    ports = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for a in ses.pop_alerts():
            if isinstance(a, lt.listen_failed_alert):
                log("LISTEN FAILED", a.message())
                sys.exit(3)
            if isinstance(a, lt.listen_succeeded_alert) and a.socket_type in wanted:
                ports[a.socket_type] = a.port
                if len(ports) == len(wanted):
                    if len(set(ports.values())) != 1:
                        log("LISTEN FAILED: transports on different ports", ports)
                        sys.exit(3)
                    return a.port
                continue
            log("alert:", type(a).__name__, a.message())
        ses.wait_for_alert(100)
    log("TIMEOUT waiting for the listen sockets", wanted, "got", ports)
    sys.exit(3)


class Watchdog:
    """Ends the process when its parent goes away or after `max_seconds`: no orphaned peers."""

    def __init__(self, max_seconds):
        self.parent = os.getppid()
        self.deadline = time.monotonic() + max_seconds

    def check(self):
        if os.getppid() != self.parent:
            log("parent exited; stopping")
            sys.exit(4)
        if time.monotonic() > self.deadline:
            log("max run time reached; stopping")
            sys.exit(5)
