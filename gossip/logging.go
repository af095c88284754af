package gossip

import (
	"bytes"
	"context"
	"log/slog"
)

// logWriter turns memberlist's "[LEVEL] memberlist: …" lines into slog
// records at the matching level.
type logWriter struct {
	log *slog.Logger
	// drops counts the lines that report a dropped packet; limit bounds
	// how many of them are logged (anyone can send garbage to the port).
	drops interface{ Add(uint64) uint64 }
	limit *rateLimit
}

func (w logWriter) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	level := slog.LevelInfo
	for _, l := range []struct {
		tag   string
		level slog.Level
	}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError}} {
		if i := bytes.Index(line, []byte(l.tag)); i >= 0 {
			level = l.level
			line = bytes.TrimSpace(line[i+len(l.tag):])
			break
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	if w.limit != nil && isPacketDrop(line) {
		w.drops.Add(1)
		if !w.limit.allow() {
			return len(p), nil
		}
	}
	w.log.Log(context.Background(), level, string(line), "component", "memberlist")
	return len(p), nil
}
