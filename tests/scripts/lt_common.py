"""Shared helpers for the libtorrent scripts of the ringtorrent test kit.

Every session these scripts make stays on loopback: DHT, local peer discovery, UPnP, NAT-PMP and
uTP are off, and the session listens only on the address it is given (see shared/INTEROP.md).
"""

import os
import sys
import time

import libtorrent as lt


def log(*parts):
    print(*parts, flush=True)


def split_addr(text):
    """'127.0.0.2:6881' -> ('127.0.0.2', 6881)."""
    host, _, port = text.rpartition(":")
    return host, int(port)


def make_session(listen, upload_rate_limit=0, seed=False, disable_hash_checks=False):
    """A libtorrent session confined to `listen` (an 'IP:PORT' string; PORT may be 0)."""
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
            "enable_incoming_utp": False,
            "enable_outgoing_utp": False,
            "allow_multiple_connections_per_ip": True,
            "upload_rate_limit": upload_rate_limit,
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
    ses = lt.session(pack)
    # libtorrent puts loopback and LAN peers in an unlimited "local" peer class; put every
    # address in the global class so upload_rate_limit applies on 127.x too.
    everyone = lt.ip_filter()
    everyone.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
    ses.set_peer_class_filter(everyone)
    return ses


def add_torrent(ses, torrent, save_path, flags=0, tracker=None, magnet=None):
    """Adds a .torrent file, or a magnet link (metadata fetched from peers) if `magnet`."""
    if magnet:
        params = lt.parse_magnet_uri(magnet)
    else:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(torrent)
    params.save_path = save_path
    params.flags = (params.flags | flags) & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
    params.flags |= lt.torrent_flags.disable_pex | lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd
    if tracker:
        params.trackers = [tracker]
    return ses.add_torrent(params)


def listen_port(ses, timeout_s):
    """Waits for the listen socket; returns its port (the one the OS chose if we asked for 0)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for a in ses.pop_alerts():
            if isinstance(a, lt.listen_failed_alert):
                log("LISTEN FAILED", a.message())
                sys.exit(3)
            if isinstance(a, lt.listen_succeeded_alert) and a.socket_type == lt.socket_type_t.tcp:
                return a.port
            log("alert:", type(a).__name__, a.message())
        ses.wait_for_alert(100)
    log("TIMEOUT waiting for the listen socket")
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
