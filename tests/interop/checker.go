// Command checker verifies a running sealog log with Go's reference
// transparency-log code, golang.org/x/mod/sumdb/tlog and sumdb/note:
//
//   - the checkpoint's signature, with the log's verifier key;
//   - every entry bundle, from which it rebuilds the tree and its root;
//   - every hash tile, byte for byte against tlog.ReadTileData, and again
//     through tlog.TileHashReader, which authenticates tiles against the
//     checkpoint as it reads them;
//   - sampled inclusion proofs (by index and by leaf hash) and consistency
//     proofs, for past tree sizes too, with tlog.CheckRecord/CheckTree.
//
// Usage: checker URL VKEY
package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const height = 8

var base string

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "interop: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func get(path string) []byte {
	resp, err := http.Get(base + path)
	if err != nil {
		fail("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fail("GET %s: %v", path, err)
	}
	if resp.StatusCode != 200 {
		fail("GET %s: %s: %s", path, resp.Status, body)
	}
	return body
}

// c2spPath turns Go's tile path tile/H/L/N[.p/W] into tlog-tiles'
// tile/L/N[.p/W], which has no height element.
func c2spPath(t tlog.Tile) string {
	p := t.Path()
	prefix := fmt.Sprintf("tile/%d/", height)
	if !strings.HasPrefix(p, prefix) {
		fail("unexpected Go tile path %s", p)
	}
	return "/tile/" + strings.TrimPrefix(p, prefix)
}

func parseCheckpoint(text, origin string) (int64, tlog.Hash) {
	lines := strings.Split(text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		fail("checkpoint body has %d lines: %q", len(lines), text)
	}
	if lines[0] != origin {
		fail("checkpoint origin %q, key name %q", lines[0], origin)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || strconv.FormatInt(size, 10) != lines[1] {
		fail("checkpoint size %q", lines[1])
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		fail("checkpoint root %q: %v", lines[2], err)
	}
	return size, root
}

type proof struct {
	Index  int64    `json:"index"`
	Size   int64    `json:"size"`
	From   int64    `json:"from"`
	To     int64    `json:"to"`
	Hashes []string `json:"hashes"`
}

func getProof(path string) []tlog.Hash {
	var p proof
	if err := json.Unmarshal(get(path), &p); err != nil {
		fail("%s: %v", path, err)
	}
	out := make([]tlog.Hash, len(p.Hashes))
	for i, s := range p.Hashes {
		h, err := tlog.ParseHash(s)
		if err != nil {
			fail("%s: hash %d: %v", path, i, err)
		}
		out[i] = h
	}
	return out
}

// serverTiles reads tiles from the log, for tlog.TileHashReader.
type serverTiles struct{}

func (serverTiles) Height() int { return height }

func (serverTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		out[i] = get(c2spPath(t))
	}
	return out, nil
}

func (serverTiles) SaveTiles([]tlog.Tile, [][]byte) {}

func main() {
	if len(os.Args) != 3 {
		fail("usage: checker URL VKEY")
	}
	base = strings.TrimRight(os.Args[1], "/")
	verifier, err := note.NewVerifier(strings.TrimSpace(os.Args[2]))
	if err != nil {
		fail("verifier key: %v", err)
	}

	// The checkpoint, checked with sumdb/note.
	msg := get("/checkpoint")
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	size, root := parseCheckpoint(n.Text, verifier.Name())
	if size < 2*256+1 {
		fail("the log has %d entries; the check needs more than two tiles", size)
	}
	tampered := strings.Replace(string(msg), "\n"+strconv.FormatInt(size, 10)+"\n", "\n"+strconv.FormatInt(size+1, 10)+"\n", 1)
	if _, err := note.Open([]byte(tampered), note.VerifierList(verifier)); err == nil {
		fail("a checkpoint with a changed size still verifies")
	}

	// Every entry bundle; rebuild the stored hashes from the entries.
	var entries [][]byte
	var stored []tlog.Hash
	hr := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			if x >= int64(len(stored)) {
				return nil, fmt.Errorf("hash %d not stored", x)
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	bundles := 0
	for start := int64(0); start < size; start += 256 {
		w := size - start
		if w > 256 {
			w = 256
		}
		t := tlog.Tile{H: height, L: -1, N: start / 256, W: int(w)}
		path := "/tile/entries/" + strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/data/", height))
		data := get(path)
		for k := int64(0); k < w; k++ {
			if len(data) < 2 {
				fail("%s: truncated at entry %d", path, k)
			}
			l := int(binary.BigEndian.Uint16(data))
			if l != 32 || len(data) < 2+l {
				fail("%s: entry %d has length %d", path, k, l)
			}
			e := data[2 : 2+l]
			data = data[2+l:]
			hs, err := tlog.StoredHashes(int64(len(entries)), e, hr)
			if err != nil {
				fail("stored hashes: %v", err)
			}
			entries = append(entries, e)
			stored = append(stored, hs...)
		}
		if len(data) != 0 {
			fail("%s: %d trailing bytes", path, len(data))
		}
		bundles++
	}
	got, err := tlog.TreeHash(size, hr)
	if err != nil || got != root {
		fail("root from entries %v, checkpoint %v (%v)", got, root, err)
	}

	// Every hash tile, byte for byte.
	tiles := tlog.NewTiles(height, 0, size)
	for _, t := range tiles {
		want, err := tlog.ReadTileData(t, hr)
		if err != nil {
			fail("ReadTileData %v: %v", t, err)
		}
		have := get(c2spPath(t))
		if string(have) != string(want) {
			fail("tile %s differs from tlog.ReadTileData", c2spPath(t))
		}
	}
	// And through TileHashReader, which checks tiles against the root.
	thr := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, serverTiles{})
	if got, err := tlog.TreeHash(size, thr); err != nil || got != root {
		fail("TileHashReader root %v: %v", got, err)
	}

	// Sampled inclusion and consistency proofs, for past sizes too.
	rng := rand.New(rand.NewSource(1))
	inclusions, consistencies := 0, 0
	for k := 0; k < 200; k++ {
		s := size
		if k%2 == 1 {
			s = 1 + rng.Int63n(size)
		}
		i := rng.Int63n(s)
		th, err := tlog.TreeHash(s, hr)
		if err != nil {
			fail("TreeHash(%d): %v", s, err)
		}
		leaf := tlog.RecordHash(entries[i])
		for _, q := range []string{
			fmt.Sprintf("index=%d&size=%d", i, s),
			fmt.Sprintf("leaf_hash=%s&size=%d", url.QueryEscape(base64.StdEncoding.EncodeToString(leaf[:])), s),
		} {
			p := getProof("/v1/proof/inclusion?" + q)
			if err := tlog.CheckRecord(p, s, th, i, leaf); err != nil {
				fail("inclusion %s: %v", q, err)
			}
			if len(p) > 0 {
				p[0][0] ^= 1
				if tlog.CheckRecord(p, s, th, i, leaf) == nil {
					fail("a tampered inclusion proof %s verifies", q)
				}
			}
			inclusions++
		}
		// Also prove from the log's tiles alone, as a tile client does.
		pt, err := tlog.ProveRecord(size, i, thr)
		if err != nil || tlog.CheckRecord(pt, size, root, i, leaf) != nil {
			fail("inclusion of %d from tiles: %v", i, err)
		}

		m := 1 + rng.Int63n(s)
		mh, _ := tlog.TreeHash(m, hr)
		p := getProof(fmt.Sprintf("/v1/proof/consistency?from=%d&to=%d", m, s))
		if err := tlog.CheckTree(p, s, th, m, mh); err != nil {
			fail("consistency %d..%d: %v", m, s, err)
		}
		consistencies++
	}
	fmt.Printf("interop: OK origin=%s size=%d bundles=%d tiles=%d inclusion=%d consistency=%d\n",
		verifier.Name(), size, bundles, len(tiles), inclusions, consistencies)
}
