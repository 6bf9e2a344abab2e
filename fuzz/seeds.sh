#!/usr/bin/env bash
# Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/seed-*:
# real .torrent files made by `ringtorrent create`, real resume files the engine writes
# (`ringtorrent seed` on complete and on partial data, stopped with SIGINT), and protocol
# messages built with the engine's encoders (examples/seeds.rs).
# Run from the repository root after `cargo build --release -p ringtorrent-cli`.
# Seeds only start a corpus: fuzz, then minimise (see RELIABILITY.md, "Fuzzing").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${RINGTORRENT:-$root/target/release/ringtorrent}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

mkdir -p multi/sub out partial/multi/sub
head -c 70000 /dev/urandom >multi/a.bin
printf 'hello fuzz\n' >multi/sub/b.txt
head -c 20000 /dev/urandom >multi/sub/c.dat
head -c 40000 /dev/urandom >single.bin
"$bin" create --no-date --piece-length 16KiB --comment "fuzz seed" \
    --tracker http://127.0.0.1:6969/announce --tracker udp://127.0.0.1:6969,http://tr.example/a \
    --web-seed http://ws.example/ -o out/multi.torrent multi >/dev/null
"$bin" create --no-date --piece-length 16KiB --private -o out/single.torrent single.bin >/dev/null

# Partial data: b.txt missing, c.dat short.
cp multi/a.bin partial/multi/
head -c 5000 multi/sub/c.dat >partial/multi/sub/c.dat
seed() { timeout -s INT 6 "$bin" seed --no-trackers --listen 127.0.0.1:0 -q "$@" >/dev/null 2>&1 || true; }
seed out/multi.torrent "$work"
seed --tracker http://127.0.0.1:1/announce out/single.torrent "$work/single.bin"
seed out/multi.torrent "$work/partial"
n=0
for f in .ringtorrent/*.resume partial/.ringtorrent/*.resume; do
    n=$((n + 1))
    cp "$f" "out/engine-$n.resume"
done

cargo run --quiet --manifest-path "$root/fuzz/Cargo.toml" --example seeds -- \
    "$root/fuzz/corpus" out/*.torrent out/*.resume
ls "$root/fuzz/corpus"/*/seed-* | wc -l
