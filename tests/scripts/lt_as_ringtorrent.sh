#!/bin/bash
# A stand-in for `ringtorrent download` built on the libtorrent leecher, to check the interop
# tests themselves. From the workspace root:
#   RINGTORRENT_BIN=tests/scripts/lt_as_ringtorrent.sh cargo test -p rt-testkit --test download_interop
# Maps the CLI contract onto lt_leech.py and prints "hash failed" lines on stderr.
set -o pipefail
[ "$1" = download ] || exit 2
shift
torrent="$1"; shift
args=()
# The CLI's default transport is both (TCP and uTP); `--transport` picks one.
export RT_LT_TRANSPORT=both
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift 2;;
    --listen) args+=(--listen "$2"); shift 2;;
    --peer) args+=(--peer "$2"); shift 2;;
    --shards) shift 2;;
    --transport) RT_LT_TRANSPORT="$2"; shift 2;;
    *) shift;;
  esac
done
/usr/bin/python3 "$(dirname "$0")/lt_leech.py" --torrent "$torrent" --save "$out" "${args[@]}" --timeout 80 | sed -u 's/HASH FAILED/hash failed/' >&2
