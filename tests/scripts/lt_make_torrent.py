"""Makes a v1-only .torrent with libtorrent (no pad files) and prints its info-hash in hex.

usage: lt_make_torrent.py PATH -o OUT [--piece-length N] [--tracker URL]
"""

import argparse
import os

import libtorrent as lt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--piece-length", type=int, default=256 * 1024)
    ap.add_argument("--tracker")
    args = ap.parse_args()

    path = os.path.abspath(args.path)
    fs = lt.file_storage()
    lt.add_files(fs, path)
    if fs.num_files() == 0:
        raise SystemExit("no files under " + path)
    t = lt.create_torrent(fs, args.piece_length, flags=lt.create_torrent.v1_only)
    if args.tracker:
        t.add_tracker(args.tracker)
    lt.set_piece_hashes(t, os.path.dirname(path))
    data = lt.bencode(t.generate())
    with open(args.out, "wb") as f:
        f.write(data)
    print(str(lt.torrent_info(args.out).info_hashes().v1))


if __name__ == "__main__":
    main()
